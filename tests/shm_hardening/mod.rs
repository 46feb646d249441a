//! The shared-memory output and `recv --shm` against what other processes can do: a subscriber
//! stopped under `--policy lossless`, a service another program created, a second publisher,
//! names with control characters, and a rogue publisher whose header sizes wrap. Python peers
//! use `<repo>/.venv` with `iceoryx2==0.10.0` and the example's `FrameHeader`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::shm::{python, repo, run_python, service};
use super::util::{self, Server, TIMEOUT, assert_clean_failure, run};

/// A Python peer that creates a service its own way (`how`: iceoryx2's defaults, or one
/// subscriber at most), subscribes, says "ready" and holds the service until its stdin closes.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
}

const HOLDER: &str = r#"
import ctypes, sys
sys.path.insert(0, "examples")
import iceoryx2 as iox2
from shm_consumer import FrameHeader
name, how = sys.argv[1], sys.argv[2]
node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
builder = (node.service_builder(iox2.ServiceName.new(name))
           .publish_subscribe(iox2.Slice[ctypes.c_uint8]).user_header(FrameHeader))
if how == "one-subscriber":
    builder = builder.max_subscribers(1)
service = builder.create()
subscriber = service.subscriber_builder().create()
print("ready", flush=True)
sys.stdin.read()
"#;

impl Holder {
    fn start(name: &str, how: &str) -> Holder {
        let mut child = Command::new(python())
            .args(["-c", HOLDER, name, how])
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the Python holder did not start");
        let stdin = child.stdin.take();
        Holder { child, stdin }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Closing stdin lets it leave cleanly, removing what it created.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The error line of a failed run, which must read as words, not a Rust `Debug` name.
fn readable_failure(output: &std::process::Output, needle: &str) {
    assert_clean_failure(output, needle);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for debug in ["DoesNot", "Incompatible", "Error(", "Exceeds"] {
        assert!(!stderr.contains(debug), "raw Debug text in: {stderr}");
    }
}

#[test]
fn a_service_made_by_another_program_is_not_published_on() {
    // iceoryx2's defaults admit two publishers: glstream must not be one of two.
    let name = service("foreign-defaults");
    let holder = Holder::start(&name, "defaults");
    let output = run(&["--shm", &name, "--width", "96", "--height", "64"]);
    readable_failure(
        &output,
        "another program created it with settings glstream does not use",
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("up to 2 publishers"));
    drop(holder);
    // Fewer subscribers than glstream asks for (iceoryx2 says
    // DoesNotSupportRequestedAmountOfSubscribers when asked for more).
    let name = service("foreign-one-subscriber");
    let holder = Holder::start(&name, "one-subscriber");
    readable_failure(
        &run(&["--shm", &name, "--width", "96", "--height", "64"]),
        "another program created it",
    );
    drop(holder);
}

#[test]
fn a_second_glstream_at_another_size_is_refused_while_the_first_publishes() {
    let name = service("second-size");
    let _first = super::shm::publishing(&["--shm", &name, "--width", "96", "--height", "64"]);
    readable_failure(
        &run(&["--shm", &name, "--width", "128", "--height", "32"]),
        "another glstream is publishing on it",
    );
}

#[test]
fn names_with_control_characters_are_refused() {
    for name in [
        "a\tb",
        "frames\nlistening on 127.0.0.1:9",
        "\u{1b}[31mred",
        "del\u{7f}",
    ] {
        let output = run(&["--shm", name]);
        assert_clean_failure(&output, "not a valid iceoryx2 service name");
        assert!(output.stdout.is_empty(), "{:?}", output.stdout);
        assert_clean_failure(
            &run(&["recv", "--shm", name, "--timeout", "1"]),
            "not a valid iceoryx2 service name",
        );
    }
}

/// Publishes three frames whose headers lie (their sizes wrap in u32) once a subscriber is there.
const ROGUE: &str = r#"
import ctypes, sys, time
sys.path.insert(0, "examples")
import iceoryx2 as iox2
from shm_consumer import FrameHeader
name = sys.argv[1]
node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
service = (node.service_builder(iox2.ServiceName.new(name))
           .publish_subscribe(iox2.Slice[ctypes.c_uint8]).user_header(FrameHeader).create())
publisher = service.publisher_builder().initial_max_slice_len(64).create()
deadline = time.monotonic() + 100
while service.dynamic_config.number_of_subscribers == 0:
    if time.monotonic() > deadline:
        sys.exit("no subscriber came")
    time.sleep(0.01)
for index in range(3):
    sample = publisher.loan_slice_uninit(0)
    header = sample.user_header().contents
    # 1073741824 x 4 bytes = 2^32: a stride of 0 and an empty payload if it wraps.
    header.frame_index, header.width, header.height = index, 1073741824, 32
    header.format, header.stride = 1, 0
    sample.assume_init().send()
print("sent", flush=True)
while service.dynamic_config.number_of_subscribers > 0 and time.monotonic() < deadline:
    time.sleep(0.01)
"#;

#[test]
fn recv_refuses_headers_whose_sizes_wrap() {
    let name = service("rogue");
    let rogue = {
        let name = name.clone();
        std::thread::spawn(move || run_python(&["-c", ROGUE, &name]))
    };
    let output = run(&["recv", "--shm", &name, "--frames", "3", "--timeout", "60"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_clean_failure(
        &output,
        "frame 0: bad header: 1073741824x32 rgba8 with stride 0",
    );
    assert!(!stdout.contains("received"), "{stdout}");
    let rogue = rogue.join().unwrap();
    assert!(
        rogue.status.success(),
        "{}",
        String::from_utf8_lossy(&rogue.stderr)
    );
}

/// Reads `n` frames from `client`, failing the test if they have not all come by `deadline`.
fn frames_by(client: &mut std::net::TcpStream, n: usize, deadline: Instant, why: &str) {
    for got in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {got} of {n} frames came {why}");
        client.set_read_timeout(Some(left)).unwrap();
        let mut header = [0u8; 12];
        let complete = client.read_exact(&mut header).and_then(|()| {
            let len = u64::from_le_bytes(header[..8].try_into().unwrap());
            let mut pixels = vec![0u8; len as usize];
            client.read_exact(&mut pixels)
        });
        if let Err(e) = complete {
            panic!("only {got} of {n} frames came {why} ({e})");
        }
    }
}

#[test]
fn a_stopped_lossless_subscriber_holds_the_stream_up_once_not_per_frame() {
    let name = service("stopped");
    let server = Server::start(&[
        "--shm",
        &name,
        "--policy",
        "lossless",
        "--scene",
        "pattern",
        "--width",
        "96",
        "--height",
        "64",
        "--send-timeout",
        "5",
    ]);
    let mut subscriber = util::glstream()
        .args(["recv", "--shm", &name, "--timeout", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        server.wait_for_log(&format!("shm:{name} subscribers connected")),
        "{}",
        server.stderr()
    );
    let signal = |signal: &str| {
        let status = Command::new("kill")
            .args([signal, &subscriber.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    // The subscriber's queue fills; the next frame waits out one --send-timeout for it.
    let mut client = server.connect();
    frames_by(
        &mut client,
        3,
        Instant::now() + TIMEOUT,
        "while the stopped subscriber's queue filled",
    );
    assert!(
        server.wait_for_log("no longer waited for"),
        "{}",
        server.stderr()
    );
    // From then on the stream goes at its own pace: 20 frames would take 100 s if each waited
    // the 5 s send timeout for the stopped subscriber.
    frames_by(
        &mut client,
        20,
        Instant::now() + Duration::from_secs(60),
        "in 60 s after the stopped subscriber's first deadline",
    );
    signal("-KILL");
    let _ = subscriber.wait();
    drop(server);
}
