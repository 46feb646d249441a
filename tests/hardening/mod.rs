//! Issue 18, the second hardening round, for the stream's core: stdout carries nothing but
//! frames whatever else runs beside it, every stop signal takes the clean path, sizes that
//! overflow are named as sizes, and options that would do nothing are refused.

use super::*;
use std::path::Path;

fn scratch(name: &str) -> std::path::PathBuf {
    super::scratch(&format!("hardening-{name}"))
}

/// With --stdout beside any other output, stdout holds exactly the frames: the other output's
/// ready line goes to stderr. (It used to be written into the stream: a Blender consumer then
/// read a length of 7956011598751164780.)
#[test]
fn stdout_carries_only_frames_beside_every_other_output() {
    let dir = scratch("stdout-beside");
    let socket = dir.join("s.sock");
    let service = format!("glstream/test-stdout-{}", std::process::id());
    let cases: [(&[&str], &str); 5] = [
        (&["--port", "0"], "listening on 127.0.0.1:"),
        (&["--unix", path_str(&socket)], "listening on unix:"),
        (&["--shm", &service], "publishing on shm:"),
        (&["--http", "0"], "http listening on http://"),
        (
            &["--zmq-bind", "tcp://127.0.0.1:*", "--zmq-pattern", "pub"],
            "zmq pub listening on tcp://127.0.0.1:",
        ),
    ];
    for (other, ready) in cases {
        let args = [
            &["--stdout", "--width", W, "--height", H, "--frames", "3"][..],
            other,
        ]
        .concat();
        let output = run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{other:?}: {stderr}");
        assert_eq!(
            output.stdout.len(),
            3 * (12 + 98 * 66 * 4),
            "{other:?}: stdout holds more than the frames; starts {:?}",
            String::from_utf8_lossy(&output.stdout[..output.stdout.len().min(40)])
        );
        for frame in output.stdout.chunks(12 + 98 * 66 * 4) {
            assert_eq!(frame[..12], [0x10, 0x65, 0, 0, 0, 0, 0, 0, 66, 0, 98, 0]);
        }
        assert!(
            stderr.contains(ready),
            "{other:?}: no {ready:?} in {stderr}"
        );
    }
}

fn wait_until_gone(path: &Path) -> bool {
    let deadline = std::time::Instant::now() + util::TIMEOUT;
    while std::time::Instant::now() < deadline {
        if !path.exists() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// SIGHUP and SIGQUIT stop the stream the way SIGTERM does: exit 0 and the socket file removed.
/// (They used to end the process by signal, leaving the `--unix` socket behind.)
#[test]
fn hup_and_quit_are_clean_stops() {
    let dir = scratch("signals");
    for signal in ["HUP", "QUIT", "TERM", "INT"] {
        let socket = dir.join(format!("{signal}.sock"));
        let mut server = Server::start_with(
            &["--unix", path_str(&socket), "--width", W, "--height", H],
            "listening on unix:",
        );
        let mut client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        client.set_read_timeout(Some(util::TIMEOUT)).unwrap();
        read_frames(&mut client, 1);
        server.signal(signal);
        let status = server.wait();
        assert_eq!(status.code(), Some(0), "SIG{signal}: {}", server.stderr());
        assert!(
            server
                .stderr()
                .contains(&format!("SIG{signal} received: stopping")),
            "{}",
            server.stderr()
        );
        assert!(wait_until_gone(&socket), "SIG{signal} left {socket:?}");
    }
}

/// SIGUSR1 and SIGUSR2 mean nothing to glstream: logged, ignored, the stream goes on.
#[test]
fn usr1_and_usr2_are_ignored() {
    let mut server = Server::start(&["--width", W, "--height", H]);
    for signal in ["USR1", "USR2"] {
        server.signal(signal);
        assert!(
            server.wait_for_log(&format!("SIG{signal} has no meaning to glstream; ignored")),
            "{}",
            server.stderr()
        );
    }
    read_frames(&mut server.connect(), 2);
    assert!(server.is_running());
    server.signal("TERM");
    assert_eq!(server.wait().code(), Some(0));
}

/// A size whose byte count overflows is named by its sizes, for the header in use; it used to
/// print a wrapped byte count and name the blender32 header whatever the header was.
#[test]
fn overflowing_sizes_are_named_not_wrapped() {
    let huge = "4294967295";
    for header in ["raw", "glstream"] {
        let output = run(&["--header", header, "--width", huge, "--height", huge]);
        assert_clean_failure(
            &output,
            "4294967295x4294967295 rgba8 frames would be over 2^64 bytes each",
        );
    }
    let output = run(&[
        "--header",
        "glstream",
        "--width",
        "2000000000",
        "--height",
        "1",
    ]);
    assert_clean_failure(&output, "glstream header's 32-bit stride field");
    let output = run(&[
        "--header",
        "blender32",
        "--width",
        "65535",
        "--height",
        "65535",
    ]);
    assert_clean_failure(
        &output,
        "a frame of 17179344900 bytes does not fit the blender32",
    );
}

/// Options that would do nothing are refused with one line, not accepted silently.
#[test]
fn options_that_would_do_nothing_are_refused() {
    for (args, needle) in [
        (
            &["--jpeg-quality", "50"][..],
            "--jpeg-quality applies to the HTTP output only",
        ),
        (
            &["--preview-fps", "5"],
            "--preview-fps applies to the HTTP output only",
        ),
        (
            &["--shard", "0/2"],
            "--shard 0/2: the blender header carries no frame index",
        ),
    ] {
        assert_clean_failure(&run(args), needle);
    }
}
