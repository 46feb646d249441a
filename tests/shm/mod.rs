//! The shared-memory output (`--shm`) from its consumers' side: the Python example
//! (examples/shm_consumer.py, with the iceoryx2 binding from PyPI) and `glstream recv --shm`
//! against the real binary. The Python tests need `<repo>/.venv` with `iceoryx2==0.10.0` and
//! numpy (`.ci/run` makes it); without it they fail and say what to install, never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use glstream::stream::{FRAME_HEADER_LEN, FRAME_HEADER_TYPE_NAME, FrameHeader};

use super::util::{self, Server, TIMEOUT, assert_clean_failure, run};

/// A service name no other test (or test run) uses.
pub(crate) fn service(name: &str) -> String {
    format!("glstream-test/{name}-{}", std::process::id())
}

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `<repo>/.venv/bin/python`, which must have the iceoryx2 binding and numpy.
pub(crate) fn python() -> PathBuf {
    let python = repo().join(".venv/bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import iceoryx2, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ready,
        "{} cannot import iceoryx2 and numpy; create it: python3 -m venv .venv && \
         .venv/bin/pip install iceoryx2==0.10.0 numpy (.ci/run does this)",
        python.display()
    );
    python
}

/// Runs `python ARGS` to completion, failing the test after [`TIMEOUT`].
pub(crate) fn run_python(args: &[&str]) -> Output {
    let child = Command::new(python())
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.expect("python output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("python {args:?} did not finish in {TIMEOUT:?}");
        }
    }
}

/// Runs the example against `service` with `args`; returns its stdout, failing on a non-zero
/// exit.
fn consumer(service: &str, args: &[&str]) -> String {
    let output = run_python(&[&["examples/shm_consumer.py", service][..], args].concat());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "shm_consumer.py {service} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

pub(crate) fn publishing(args: &[&str]) -> Server {
    Server::start_with(args, "publishing on shm:")
}

#[test]
fn the_python_header_is_the_rust_header_byte_for_byte() {
    // The example's ctypes structure, filled with distinct values, as bytes; and its layout.
    let script = "import sys; sys.path.insert(0, 'examples'); import ctypes; \
        from shm_consumer import FrameHeader as H; \
        h = H(0x0102030405060708, 0x1112131415161718, 21, 22, 23, 24, 25, 26, 0x2122232425262728); \
        print(bytes(h).hex(), ctypes.sizeof(H), ctypes.alignment(H), H.type_name(), \
        *[getattr(H, f).offset for f, _ in H._fields_])";
    let output = run_python(&["-c", script]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    let header = FrameHeader {
        frame_index: 0x0102030405060708,
        timestamp_ns: 0x1112131415161718,
        width: 21,
        height: 22,
        format: 23,
        flags: 24,
        stride: 25,
        reserved: 26,
        request_id: 0x2122232425262728,
    };
    // The Rust header's bytes, field by field at its own offsets, in native order.
    let mut bytes = [0u8; FRAME_HEADER_LEN];
    let mut put =
        |offset: usize, value: &[u8]| bytes[offset..offset + value.len()].copy_from_slice(value);
    use std::mem::offset_of;
    put(
        offset_of!(FrameHeader, frame_index),
        &header.frame_index.to_ne_bytes(),
    );
    put(
        offset_of!(FrameHeader, timestamp_ns),
        &header.timestamp_ns.to_ne_bytes(),
    );
    put(offset_of!(FrameHeader, width), &header.width.to_ne_bytes());
    put(
        offset_of!(FrameHeader, height),
        &header.height.to_ne_bytes(),
    );
    put(
        offset_of!(FrameHeader, format),
        &header.format.to_ne_bytes(),
    );
    put(offset_of!(FrameHeader, flags), &header.flags.to_ne_bytes());
    put(
        offset_of!(FrameHeader, stride),
        &header.stride.to_ne_bytes(),
    );
    put(
        offset_of!(FrameHeader, reserved),
        &header.reserved.to_ne_bytes(),
    );
    put(
        offset_of!(FrameHeader, request_id),
        &header.request_id.to_ne_bytes(),
    );
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(fields[0], hex, "bytes");
    assert_eq!(fields[1], std::mem::size_of::<FrameHeader>().to_string());
    assert_eq!(fields[2], std::mem::align_of::<FrameHeader>().to_string());
    assert_eq!(fields[3], FRAME_HEADER_TYPE_NAME);
    assert_eq!(
        fields[4..],
        ["0", "8", "16", "20", "24", "28", "32", "36", "40"]
    );
}

#[test]
fn a_lossless_python_subscriber_gets_300_pattern_frames_in_order() {
    let name = service("lossless");
    let mut server = publishing(&[
        "--shm", &name, "--scene", "pattern", "--frames", "300", "--policy", "lossless", "--width",
        "160", "--height", "120",
    ]);
    let stdout = consumer(&name, &["--verify-pattern"]);
    assert!(
        stdout.contains("received 300 frames 160x120")
            && stdout.contains("frames 0..=299 in order, 0 dropped"),
        "{stdout}"
    );
    assert!(server.wait().success(), "{}", server.stderr());
}

#[test]
fn a_slow_latest_subscriber_skips_frames_but_never_sees_a_torn_one() {
    let name = service("latest");
    let mut server = publishing(&[
        "--shm", &name, "--scene", "pattern", "--frames", "600", "--width", "160", "--height",
        "120",
    ]);
    // Each sample is held 10 ms: the renderer runs on; every frame taken still decodes whole.
    let stdout = consumer(&name, &["--verify-pattern", "--hold-ms", "10"]);
    let dropped: u64 = stdout
        .lines()
        .find_map(|l| l.split(" in order, ").nth(1))
        .and_then(|rest| rest.trim_end_matches(" dropped").parse().ok())
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    // Where it starts depends on how soon the subscriber first reads: frames published before
    // that overflow its two-sample queue (latest policy), so only the end and the order are
    // fixed. (A fresh clone's first run once began at frame 10 on a loaded machine.)
    assert!(stdout.contains("..=599 in order"), "{stdout}");
    assert!(
        dropped > 0,
        "a slow subscriber should skip frames:\n{stdout}"
    );
    assert!(server.wait().success(), "{}", server.stderr());
}

#[test]
fn recv_shm_checks_every_frame_and_saves_them() {
    let name = service("recv");
    let dir = super::scratch("shm-recv");
    let mut server = publishing(&[
        "--shm", &name, "--scene", "pattern", "--frames", "40", "--policy", "lossless", "--flip",
        "--width", "96", "--height", "64",
    ]);
    let output = util::run_ok(&[
        "recv",
        "--shm",
        &name,
        "--verify-pattern",
        "--frames",
        "40",
        "--save",
        super::path_str(&dir),
        "--every",
        "20",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("pattern: frames 0..=39 in order, 0 dropped"),
        "{stdout}"
    );
    assert!(dir.join("frame_000000.png").exists() && dir.join("frame_000020.png").exists());
    assert!(server.wait().success());
}

#[test]
fn a_producer_killed_with_sigkill_does_not_stop_the_next_one() {
    let name = service("restart");
    let args = [
        "--shm", &name, "--scene", "pattern", "--width", "96", "--height", "64",
    ];
    let server = publishing(&args);
    // Mid-stream, with a subscriber attached.
    let reader = {
        let name = name.clone();
        thread::spawn(move || {
            run(&[
                "recv",
                "--shm",
                &name,
                "--frames",
                "100000",
                "--timeout",
                "5",
            ])
        })
    };
    thread::sleep(Duration::from_millis(500));
    server.signal("KILL");
    drop(server);
    let _ = reader.join();
    let mut again = publishing(&[&args[..], &["--frames", "20", "--policy", "lossless"]].concat());
    let stdout = consumer(&name, &["--verify-pattern"]);
    assert!(
        stdout.contains("frames 0..=19 in order, 0 dropped"),
        "{stdout}"
    );
    assert!(again.wait().success(), "{}", again.stderr());
}

#[test]
fn a_second_publisher_on_a_live_service_is_one_line() {
    let name = service("second");
    let _first = publishing(&["--shm", &name, "--width", "96", "--height", "64"]);
    let output = run(&["--shm", &name, "--width", "96", "--height", "64"]);
    assert_clean_failure(&output, "another glstream is publishing on it");
    assert_clean_failure(&run(&["--shm", ""]), "not a valid iceoryx2 service name");
}

#[test]
fn a_subscriber_killed_mid_stream_costs_the_others_nothing() {
    let name = service("killed");
    let mut server = publishing(&[
        "--shm", &name, "--scene", "pattern", "--frames", "400", "--policy", "lossless", "--width",
        "96", "--height", "64", "--fps", "100",
    ]);
    // A subscriber that holds every sample, so its queue is full when it dies.
    let mut victim = Command::new(python())
        .args(["examples/shm_consumer.py", &name, "--hold-ms", "1000"])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let survivor = {
        let name = name.clone();
        thread::spawn(move || run(&["recv", "--shm", &name, "--verify-pattern"]))
    };
    thread::sleep(Duration::from_millis(1500));
    victim.kill().unwrap();
    victim.wait().unwrap();
    let started = Instant::now();
    let output = survivor.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Everything it was sent, in order, and the stream did not wait out the 10 s send timeout.
    assert!(stdout.contains("in order, 0 dropped"), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}\n{}",
        started.elapsed(),
        server.stderr()
    );
    assert!(server.wait().success());
    assert!(
        !server.stderr().contains("missed it"),
        "{}",
        server.stderr()
    );
}

#[test]
fn shm_and_tcp_serve_side_by_side() {
    let name = service("beside");
    // Paced, so that the second consumer joins before the 60 frames are over.
    let mut server = Server::start(&[
        "--shm", &name, "--scene", "pattern", "--frames", "60", "--policy", "lossless", "--width",
        "96", "--height", "64", "--fps", "30",
    ]);
    let shm = {
        let name = name.clone();
        thread::spawn(move || util::run_ok(&["recv", "--shm", &name, "--verify-pattern"]))
    };
    let tcp = util::run_ok(&[
        "recv",
        "--connect",
        &server.addr.to_string(),
        "--verify-pattern",
        "--max-drops",
        "0",
    ]);
    let shm = shm.join().unwrap();
    for output in [&tcp, &shm] {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("..=59 in order, 0 dropped"), "{stdout}");
    }
    assert!(server.wait().success());
}

#[test]
fn the_documented_python_consumer_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("docs/outputs.md")).expect("docs/outputs.md");
    let blocks: Vec<&str> = readme
        .split("```python\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .filter(|block| block.contains("\"glstream::FrameHeader\""))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "docs/outputs.md should have one shm consumer"
    );
    // Only the service name changes, to one no other test uses.
    let name = service("readme");
    let from = "iox2.ServiceName.new(\"glstream/frames\")";
    assert!(
        blocks[0].contains(from),
        "the documented consumer lost {from}"
    );
    let script = blocks[0].replace(from, &format!("iox2.ServiceName.new({name:?})"));
    let path = super::scratch("shm-readme").join("consumer.py");
    std::fs::write(&path, script).unwrap();
    let mut server = publishing(&[
        "--shm", &name, "--scene", "pattern", "--frames", "30", "--policy", "lossless", "--width",
        "96", "--height", "64",
    ]);
    let output = run_python(&[super::path_str(&path)]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let indices: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let expected: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    assert_eq!(indices, expected, "{stdout}");
    assert!(server.wait().success());
}

#[test]
fn bench_measures_shm_and_reports_its_allocations_honestly() {
    // 200 frames, not bench()'s 20: a one-off allocation in the window (iceoryx2 setting up a
    // connection late on a loaded machine) must not read as a per-frame cost, while a second
    // allocation per frame still shows as 2.
    let report = util::bench(&[
        "--pbo-counts",
        "2",
        "--transports",
        "shm",
        "--frames",
        "200",
    ]);
    let configs = report["configs"].as_array().unwrap();
    let shm = configs
        .iter()
        .find(|c| c["mode"] == "e2e" && c["transport"] == "shm")
        .unwrap_or_else(|| panic!("no shm run: {report}"));
    assert!(shm["fps"].as_f64().unwrap() > 0.0, "{shm}");
    // iceoryx2 allocates one small Arc per loaned sample; nothing else may allocate per frame.
    let allocs = shm["allocs_per_frame"].as_f64().unwrap();
    assert!((0.9..=1.1).contains(&allocs), "{shm}");
    for c in configs.iter().filter(|c| c["transport"] != "shm") {
        assert_eq!(c["allocs_per_frame"].as_f64(), Some(0.0), "{c}");
    }
}

/// Streams `frames` frames of the cube (plus `extra` flags) at 96×64 through shared memory with
/// `--shm-readback mode`, saves them with `recv --shm`, and returns the producer's log.
fn stream_and_save(name: &str, mode: &str, frames: &str, extra: &[&str], dir: &Path) -> String {
    stream_sized_and_save(name, mode, frames, ("96", "64"), extra, dir)
}

/// [`stream_and_save`] at `size` (width, height).
fn stream_sized_and_save(
    name: &str,
    mode: &str,
    frames: &str,
    size: (&str, &str),
    extra: &[&str],
    dir: &Path,
) -> String {
    let mut server = publishing(
        &[
            &[
                "--shm",
                name,
                "--shm-readback",
                mode,
                "--frames",
                frames,
                "--policy",
                "lossless",
                "--width",
                size.0,
                "--height",
                size.1,
            ][..],
            extra,
        ]
        .concat(),
    );
    util::run_ok(&[
        "recv",
        "--shm",
        name,
        "--frames",
        frames,
        "--save",
        super::path_str(dir),
    ]);
    assert!(server.wait().success(), "{}", server.stderr());
    server.stderr()
}

#[test]
fn frames_read_straight_into_samples_equal_snapshots_byte_for_byte() {
    // rgba8 is read from the scene's own target; gray8 with --flip and bgra8 from the output
    // pass's renderbuffer: both kinds of colour image the reader's context attaches.
    // Snapshots are written top-down, as `recv --save` writes every frame.
    for (label, extra, snapshot) in [
        ("rgba8", &[][..], &[][..]),
        (
            "gray8-flip",
            &["--format", "gray8", "--flip"][..],
            &["--format", "gray8"][..],
        ),
        (
            "bgra8",
            &["--format", "bgra8"][..],
            &["--format", "bgra8"][..],
        ),
    ] {
        let name = service(&format!("direct-{label}"));
        let streamed = super::scratch(&format!("shm-direct-{label}"));
        let log = stream_and_save(&name, "direct", "24", extra, &streamed);
        assert!(
            log.contains(&format!("reading frames straight into shm:{name}")),
            "{log}"
        );
        let snapped = super::scratch(&format!("shm-direct-{label}-snapshot"));
        util::snapshot_ok(
            &snapped,
            ("96", "64"),
            &[&["--frames", "0..24"][..], snapshot].concat(),
        );
        for index in 0..24 {
            let file = format!("frame_{index:06}.png");
            let (got, want) = (
                std::fs::read(streamed.join(&file)).expect("saved frame"),
                std::fs::read(snapped.join(&file)).expect("snapshot"),
            );
            assert!(got == want, "{label}: {file} differs from its snapshot");
        }
    }
}

#[test]
fn samples_are_read_into_only_where_that_saves_a_copy() {
    // Alone on a software renderer, auto reads frames of 3 MiB and more into samples (1280×720
    // RGBA is 3.7 MB) and copies smaller ones out of the ring (96×64); on a GPU it keeps the ring.
    let name = service("auto");
    let dir = super::scratch("shm-auto");
    let log = stream_sized_and_save(&name, "auto", "3", ("1280", "720"), &[], &dir);
    let software = log.contains(", software)");
    assert_eq!(
        log.contains("reading frames straight into"),
        software,
        "auto chose wrongly for this renderer:\n{log}"
    );
    let name = service("auto-small");
    let log = stream_and_save(&name, "auto", "3", &[], &dir);
    assert!(!log.contains("reading frames straight into"), "{log}");
    // Asked for the ring, or beside another output, it keeps the ring.
    let name = service("pbo");
    let log = stream_and_save(&name, "pbo", "3", &[], &dir);
    assert!(!log.contains("reading frames straight into"), "{log}");
    let name = service("beside-tcp");
    let server = Server::start(&["--shm", &name, "--shm-readback", "direct"]);
    assert!(server.wait_for_log("streaming "), "{}", server.stderr());
    assert!(
        !server.stderr().contains("reading frames straight into"),
        "{}",
        server.stderr()
    );
    assert_clean_failure(
        &run(&["--shm-readback", "direct", "--port", "0"]),
        "--shm-readback needs --shm",
    );
}

#[test]
fn subscribers_holding_samples_never_see_one_rewritten() {
    // Two subscribers hold each sample they take (one 10 ms, one not at all) while the
    // renderer reads on into loans, under the latest policy: samples come back to iceoryx2 at
    // all times, some while the hub still shows their frame. Every frame either takes decodes
    // whole and in order.
    let name = service("direct-held");
    let mut server = publishing(&[
        "--shm",
        &name,
        "--shm-readback",
        "direct",
        "--scene",
        "pattern",
        "--frames",
        "600",
        "--fps",
        "300",
        "--width",
        "160",
        "--height",
        "120",
    ]);
    let slow = {
        let name = name.clone();
        thread::spawn(move || consumer(&name, &["--verify-pattern", "--hold-ms", "10"]))
    };
    // The stream starts with the first subscriber; the second joins it (two seconds long).
    assert!(
        server.wait_for_log("subscribers connected"),
        "{}",
        server.stderr()
    );
    let fast = util::run_ok(&[
        "recv",
        "--shm",
        &name,
        "--verify-pattern",
        "--max-drops",
        "600",
    ]);
    let fast = String::from_utf8_lossy(&fast.stdout).into_owned();
    let slow = slow.join().unwrap();
    for stdout in [&fast, &slow] {
        assert!(stdout.contains("..=599 in order"), "{stdout}");
    }
    assert!(server.wait().success(), "{}", server.stderr());
}
