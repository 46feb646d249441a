//! A stream's life from start to end, under the ways it can end: an error mid-stream, a client
//! that stops reading, a recording that cannot be written, signals, clients that come and go,
//! and several outputs at once. Everything runs the real binary against real sockets.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use glstream::pattern_code::decode_pattern;

use super::util::{
    self, Server, assert_clean_failure, read_blender_frame, read_frames, run, stalled_client,
};
use super::{H, W, path_str, scratch};

/// Frame indices decoded from pattern frames read until the end of the stream.
fn pattern_indices(stream: &mut impl Read) -> Vec<u64> {
    std::iter::from_fn(|| read_blender_frame(stream))
        .map(|f| {
            decode_pattern(&f.pixels, f.width, f.height)
                .unwrap_or_else(|| panic!("not a pattern frame"))
        })
        .collect()
}

#[test]
fn an_error_mid_stream_is_one_line_and_no_writer_reads_freed_memory() {
    // The injected failure drops out of the render loop with `?` while three clients are being
    // written to from mapped buffers: before the frame's life was scoped, their writes read
    // unmapped memory (EFAULT, "Bad address").
    let mut command = util::glstream();
    command
        .env("GLSTREAM_TEST_FAIL_AT_FRAME", "60")
        .args(["--port", "0", "--width", "320", "--height", "240"]);
    let mut server = Server::spawn(command, "listening on ");
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut client = server.connect();
            thread::spawn(move || std::iter::from_fn(|| read_blender_frame(&mut client)).count())
        })
        .collect();
    let status = server.wait();
    let received: Vec<usize> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let log = server.stderr();
    assert!(!status.success(), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("glstream:")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("failure injected at frame 60"), "{log}");
    for bad in ["Bad address", "os error 14", "dropped", "panicked"] {
        assert!(!log.contains(bad), "{bad:?} in:\n{log}");
    }
    // Every client got whole frames up to the failure, then a clean end of stream.
    assert!(received.iter().all(|&n| n > 0), "{received:?}");
}

#[test]
fn a_stalled_client_is_dropped_at_the_send_timeout_while_a_lossless_reader_resumes() {
    let server = Server::start(&[
        "--width",
        "320",
        "--height",
        "240",
        "--policy",
        "lossless",
        "--send-timeout",
        "2",
    ]);
    let mut reader = server.connect();
    read_frames(&mut reader, 2);
    let stalled_at = Instant::now();
    let _stalled = stalled_client(server.addr);
    // The reader keeps reading; it stalls with the renderer while the stalled client holds
    // frames, then resumes once that client is dropped.
    let counter = thread::spawn(move || {
        let mut frames = 0;
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && read_blender_frame(&mut reader).is_some() {
            frames += 1;
        }
        frames
    });
    assert!(server.wait_for_log("send timeout"), "{}", server.stderr());
    let dropped_after = stalled_at.elapsed();
    // Two seconds plus a margin for a loaded machine; before, the drop took three times the
    // timeout (a per-syscall SO_SNDTIMEO that every partial write reset).
    assert!(
        dropped_after < Duration::from_secs(4),
        "dropped after {dropped_after:?}:\n{}",
        server.stderr()
    );
    let log = server.stderr();
    let line = log.lines().find(|l| l.contains("send timeout")).unwrap();
    assert!(line.contains("bytes of frame"), "how far it got: {line}");
    let frames = counter.join().unwrap();
    assert!(
        frames > 10,
        "the lossless reader resumed with only {frames} frames"
    );
}

/// A lossless client that sent bytes and then reads slowly gets every frame and a clean EOF.
fn chatty_slow_reader(mut stream: impl Read + Write) -> Vec<u64> {
    stream.write_all(b"hi").unwrap();
    let mut indices = Vec::new();
    while let Some(frame) = read_blender_frame(&mut stream) {
        indices.push(decode_pattern(&frame.pixels, frame.width, frame.height).unwrap());
        thread::sleep(Duration::from_millis(150));
    }
    indices
}

#[test]
fn a_client_that_sent_bytes_still_gets_every_frame_then_a_clean_end() {
    // Closing a socket with unread input makes Linux reset it, which discarded the frames still
    // queued for the client (2.98 of 5 arrived, then ECONNRESET).
    let args = [
        "--frames", "5", "--policy", "lossless", "--scene", "pattern", "--width", "320",
        "--height", "240",
    ];
    let mut server = Server::start(&args);
    let indices = chatty_slow_reader(server.connect());
    assert_eq!(indices, [0, 1, 2, 3, 4]);
    assert!(server.wait().success());

    let dir = scratch("lifecycle-chatty-unix");
    let path = dir.join("s.sock");
    let unix_args = [&args[..], &["--unix", path_str(&path)]].concat();
    let mut server = Server::start_with(&unix_args, "listening on unix:");
    let stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(util::TIMEOUT)).unwrap();
    assert_eq!(chatty_slow_reader(stream), [0, 1, 2, 3, 4]);
    assert!(server.wait().success());
}

#[test]
fn a_recording_that_cannot_be_written_fails_the_run() {
    let output = Command::new(env!("CARGO_BIN_EXE_glstream"))
        .args(["--stdout", "--width", W, "--height", H, "--frames", "30"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_clean_failure(&output, "standard output");

    // The reader goes away after one frame of 300.
    let mut child = Command::new(env!("CARGO_BIN_EXE_glstream"))
        .args(["--stdout", "--width", W, "--height", H, "--frames", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let frame = read_blender_frame(&mut stdout).expect("one frame");
    assert_eq!(frame.width, 98);
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert_clean_failure(&output, "standard output");
}

#[test]
fn a_recording_allocates_one_spare_not_one_per_possible_client() {
    // --stdout with no --policy is lossless: one spare buffer, as with --policy lossless, not
    // the --max-clients spares a latest stream may grow to (each one a whole frame of memory).
    let output = util::run_ok(&["--stdout", "--width", W, "--height", H, "--frames", "3"]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("(2 PBOs + 1 spare used)"), "{log}");
}

#[test]
fn a_closed_or_full_stdout_loses_the_announcement_but_not_the_server() {
    let dir = scratch("lifecycle-closed-stdout");
    // `>&-` closes stdout; `>/dev/full` makes every write fail with ENOSPC, which used to panic
    // (exit 101) on printing "listening on".
    for (redirect, warned) in [(">&-", false), (">/dev/full", true)] {
        let path = dir.join("s.sock");
        let script = format!(
            "exec {} --unix {} --frames 3 --policy lossless --width {W} --height {H} {redirect}",
            env!("CARGO_BIN_EXE_glstream"),
            path_str(&path)
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + util::TIMEOUT;
        let mut stream = loop {
            match UnixStream::connect(&path) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("the server never listened: {e}"),
            }
        };
        stream.set_read_timeout(Some(util::TIMEOUT)).unwrap();
        assert_eq!(read_frames(&mut stream, 3).len(), 3);
        drop(stream);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{redirect}: {stderr}");
        assert!(!stderr.contains("panicked"), "{redirect}: {stderr}");
        assert_eq!(
            stderr.contains("cannot print"),
            warned,
            "{redirect}: {stderr}"
        );
    }
}

#[test]
fn frames_counts_one_run_so_a_client_after_an_idle_gets_a_whole_run() {
    let mut server = Server::start(&[
        "--frames", "5", "--policy", "lossless", "--scene", "pattern", "--width", "320",
        "--height", "240", "--fps", "20",
    ]);
    // The first client leaves after two frames; the server goes idle.
    let mut first = server.connect();
    read_frames(&mut first, 2);
    drop(first);
    assert!(server.wait_for_log("left after"));
    let indices = pattern_indices(&mut server.connect());
    assert_eq!(indices, [0, 1, 2, 3, 4], "{}", server.stderr());
    assert!(server.wait().success());
}

#[test]
fn the_socket_file_is_removed_only_while_it_is_still_ours() {
    let dir = scratch("lifecycle-unix-owner");
    let path = dir.join("s.sock");
    let mut server = Server::start_with(
        &["--unix", path_str(&path), "--width", W, "--height", H],
        "listening on unix:",
    );
    // Someone replaces the socket file while the server runs.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"not yours").unwrap();
    server.signal("TERM");
    assert!(server.wait().success());
    assert_eq!(std::fs::read(&path).unwrap(), b"not yours");

    // Its own file it does remove.
    let path = dir.join("t.sock");
    let mut server = Server::start_with(
        &["--unix", path_str(&path), "--width", W, "--height", H],
        "listening on unix:",
    );
    server.signal("TERM");
    assert!(server.wait().success());
    assert!(!path.exists());
}

#[test]
fn connect_backs_off_from_a_consumer_that_hangs_up_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = Server::start_with(
        &["--connect", &addr, "--width", W, "--height", H],
        "connecting to",
    );
    let counting = thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(3);
        listener.set_nonblocking(true).unwrap();
        let mut accepted = 0;
        while Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => {
                    accepted += 1;
                    drop(stream);
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
        accepted
    });
    let accepted = counting.join().unwrap();
    // 100, 200, 400, 800, 1600 ms apart: at most about six in three seconds. Without the
    // back-off it reconnected 100 times a second.
    assert!((1..=8).contains(&accepted), "{accepted} connections in 3 s");
    drop(server);

    let output = run(&["--connect", "garbage"]);
    assert_clean_failure(&output, "HOST:PORT");
    let output = run(&["--connect", "127.0.0.1:99999"]);
    assert_clean_failure(&output, "not a port");
}

#[test]
fn sigterm_ends_a_stream_whose_frame_takes_seconds() {
    let dir = scratch("lifecycle-slow-shader");
    let shader = dir.join("slow.frag");
    // Seconds per frame on llvmpipe, in one draw call nothing can interrupt.
    std::fs::write(
        &shader,
        "void mainImage(out vec4 fragColor, in vec2 fragCoord) {\n\
         float v = 0.0;\n\
         for (int i = 0; i < 3000000; i++) { v = fract(v * 1.618 + sin(v + float(i)) + fragCoord.x); }\n\
         fragColor = vec4(v, v, v, 1.0);\n\
         }\n",
    )
    .unwrap();
    let mut server = Server::start(&[
        "--scene",
        path_str(&shader),
        "--width",
        "128",
        "--height",
        "128",
    ]);
    let _client = server.connect();
    // The once-a-second stats line comes at the end of the first frame: the signal then lands
    // while the second is being drawn.
    assert!(server.wait_for_log(" fps, "), "{}", server.stderr());
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server.wait();
    let took = signalled.elapsed();
    assert!(status.success(), "{}", server.stderr());
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after SIGTERM"
    );
}

#[test]
fn outputs_run_side_by_side_and_the_logs_agree_on_buffers() {
    let dir = scratch("lifecycle-side-by-side");
    let path = dir.join("s.sock");
    let mut server = Server::start(&[
        "--unix",
        path_str(&path),
        "--frames",
        "4",
        "--policy",
        "lossless",
        "--scene",
        "pattern",
        "--width",
        "320",
        "--height",
        "240",
        "--fps",
        "10",
    ]);
    let mut tcp = server.connect();
    let mut unix = UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(util::TIMEOUT)).unwrap();
    let (a, b) = (
        thread::spawn(move || pattern_indices(&mut tcp)),
        thread::spawn(move || pattern_indices(&mut unix)),
    );
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert!(server.wait().success());
    // Each got a contiguous run ending at the last frame (the second may join a frame late).
    for got in [&a, &b] {
        assert_eq!(got.last(), Some(&3), "{got:?}");
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    }
    let log = server.stderr();
    assert!(log.contains("2 PBOs + up to 1 spare"), "{log}");
    assert!(log.contains("(2 PBOs + 1 spare used)"), "{log}");
    assert!(log.contains("s of serving"), "{log}");

    // A second server probing the live socket is refused, and is no client of the first.
    let mut live = Server::start_with(
        &[
            "--unix",
            path_str(&dir.join("live.sock")),
            "--width",
            W,
            "--height",
            H,
        ],
        "listening on unix:",
    );
    let output = run(&["--unix", path_str(&dir.join("live.sock"))]);
    assert_clean_failure(&output, "another server is listening");
    live.signal("TERM");
    assert!(live.wait().success());
    assert!(!live.stderr().contains("connected"), "{}", live.stderr());
}

#[test]
fn a_listing_into_a_closed_pipe_ends_quietly() {
    // `glstream devices | head -1`: the reader is gone before the listing is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_glstream"))
        .arg("devices")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_signal_with_a_stalled_client_still_cleans_up_before_the_watchdog() {
    // A stalled lossless client is cut off after the shutdown's grace; the process must then
    // end on its own, well before the signal watchdog (which exits without cleaning up), so the
    // socket file goes too.
    let dir = scratch("lifecycle-stalled-signal");
    let path = dir.join("s.sock");
    let mut server = Server::start_with(
        &[
            "--unix",
            path_str(&path),
            "--width",
            "640",
            "--height",
            "480",
            "--policy",
            "lossless",
            "--send-timeout",
            "60",
            "-v",
        ],
        "listening on unix:",
    );
    // Connects and never reads: a 1.2 MB frame fills its socket at once.
    let _stalled = UnixStream::connect(&path).unwrap();
    assert!(server.wait_for_log(" connected"), "{}", server.stderr());
    server.signal("TERM");
    assert!(server.wait().success());
    let log = server.stderr();
    assert!(!log.contains("still busy"), "the watchdog ended it:\n{log}");
    assert!(!path.exists(), "the socket file was left behind:\n{log}");
}
