//! Helpers for driving the real `glstream` binary: start a server on port 0 and learn its
//! address from the "listening on" line, read frames off real sockets, and run one-shot commands
//! with a deadline. Nothing here mocks GL or the network.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: these machines are shared, and llvmpipe on two cores is slow.
pub const TIMEOUT: Duration = Duration::from_secs(120);

pub fn glstream() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_glstream"));
    command.env_remove("RUST_LOG");
    command
}

/// A running `glstream` server; killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    ready_line: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `glstream --port 0 ARGS` and waits for its "listening on" line. If it exits first,
    /// the test fails with what it printed (which says what to install when EGL is missing).
    pub fn start(args: &[&str]) -> Server {
        let args = [&["--port", "0"][..], args].concat();
        Server::start_with(&args, "listening on ")
    }

    /// Starts `glstream ARGS` and waits for a first stdout line starting with `ready`.
    pub fn start_with(args: &[&str], ready: &str) -> Server {
        let mut command = glstream();
        command.args(args);
        Server::spawn(command, ready)
    }

    /// Starts `command` (a `glstream()` with arguments and environment set) and waits for a
    /// first stdout line starting with `ready`.
    pub fn spawn(mut command: Command, ready: &str) -> Server {
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn glstream");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut err_pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let later = Arc::new(Mutex::new(String::new()));
        let out_sink = Arc::clone(&later);
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full stdout pipe; keep the lines.
            for line in lines.map_while(Result::ok) {
                let mut out = out_sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        let line = rx.recv_timeout(TIMEOUT).ok().flatten();
        let ready_line = line.as_deref().filter(|l| l.starts_with(ready));
        let addr = ready_line
            .and_then(|l| l.strip_prefix("listening on "))
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        if ready_line.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            thread::sleep(Duration::from_millis(200));
            panic!(
                "glstream {args:?} did not start (needs an EGL device: apt-get install libegl1 \
                 libegl-mesa0 libgl1-mesa-dri). stdout: {line:?}; stderr:\n{}",
                stderr.lock().unwrap()
            );
        }
        Server {
            child,
            addr,
            ready_line: line.unwrap_or_default(),
            stdout: later,
            stderr,
        }
    }

    /// The first stdout line, which the server printed when it was ready.
    pub fn ready_line(&self) -> &str {
        &self.ready_line
    }

    /// The stdout lines after the first, so far (complete once the process has exited).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to glstream");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to the test timeout) until the server has logged `needle`; the log is read by
    /// another thread, so a line the server just wrote may not be here yet.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends the server signal `name` (`TERM`, `INT`, `KILL`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the server to exit on its own (e.g. after --frames).
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_at_most(TIMEOUT)
    }

    /// Waits for the server to exit, failing the test after `limit`.
    pub fn wait_at_most(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "glstream did not exit; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One frame as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Reads one Blender-header frame (12 bytes: u64 length, u16 height, u16 width); `None` on a
/// clean end of stream before the header.
pub fn read_blender_frame(stream: &mut impl Read) -> Option<Frame> {
    let mut header = vec![0u8; 12];
    if !read_or_eof(stream, &mut header) {
        return None;
    }
    let len = u64::from_le_bytes(header[0..8].try_into().unwrap());
    let height = u16::from_le_bytes([header[8], header[9]]) as u32;
    let width = u16::from_le_bytes([header[10], header[11]]) as u32;
    assert_eq!(
        len,
        width as u64 * height as u64 * 4,
        "length field vs dimensions"
    );
    let mut pixels = vec![0u8; len as usize];
    stream.read_exact(&mut pixels).expect("whole payload");
    Some(Frame {
        header,
        width,
        height,
        pixels,
    })
}

/// Reads `n` Blender frames, failing if the stream ends early.
pub fn read_frames(stream: &mut impl Read, n: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| read_blender_frame(stream).unwrap_or_else(|| panic!("stream ended at frame {i}")))
        .collect()
}

/// Fills `buf`; false if the stream ended before the first byte.
pub fn read_or_eof(stream: &mut impl Read, buf: &mut [u8]) -> bool {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return false,
            Ok(0) => panic!("stream ended after {filled} of {} bytes", buf.len()),
            Ok(n) => filled += n,
            // A signal handled while the read blocked (some test's child ending): not an error.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
    true
}

/// Runs `glstream ARGS` to completion (with a deadline) and returns its output. The output is
/// collected while the command runs, so a command that writes a lot (--stdout) cannot block.
pub fn run(args: &[&str]) -> Output {
    let mut command = glstream();
    command.args(args);
    run_command(command)
}

/// Runs any command like [`run`]: output collected as it comes, killed after the test timeout.
pub fn run_command(mut command: Command) -> Output {
    let args = format!("{command:?}");
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {args}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.expect("collect glstream output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{args} did not finish in {TIMEOUT:?}");
        }
    }
}

/// Runs `glstream ARGS` like [`run`] and fails the test, with glstream's stderr, unless it
/// succeeded.
pub fn run_ok(args: &[&str]) -> Output {
    let output = run(args);
    assert!(
        output.status.success(),
        "glstream {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Asserts a command failed the way bad input must: non-zero exit, no panic, and a stderr of
/// one `glstream:` line containing `needle` (plus, for a command-line error, clap's usage lines
/// and a "see `glstream ... --help`" hint).
pub fn assert_clean_failure(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "expected failure, stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked:\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("glstream:") && !l.starts_with("glstream: see `glstream"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line, got:\n{stderr}");
    assert!(
        errors[0].contains(needle),
        "error line {:?} does not mention {needle:?}",
        errors[0]
    );
}

/// Writes a valid PNG that declares `side_px` × `side_px` black pixels in a few hundred
/// kilobytes at most (1-bit grey, all zeros, deflated row by row): a decompression bomb that a
/// reader must refuse from its header. Writing it never holds more than one row.
pub fn write_png_bomb(path: &std::path::Path, side_px: u32) {
    use std::io::Write;
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, side_px, side_px);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let row = vec![0u8; side_px.div_ceil(8) as usize];
    for _ in 0..side_px {
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
}

/// Distinct byte values in a buffer: a flat image has very few.
pub fn distinct_bytes(bytes: &[u8]) -> usize {
    let mut seen = [false; 256];
    for &b in bytes {
        seen[b as usize] = true;
    }
    seen.iter().filter(|&&s| s).count()
}

/// `glstream snapshot --width W --height H ARGS -o OUT`: the one way these tests render a PNG.
/// Returns what it printed, success or not (see [`snapshot_ok`]).
pub fn snapshot(out: &std::path::Path, size: (&str, &str), args: &[&str]) -> Output {
    let out = out.to_str().expect("utf-8 temp path");
    run(&[
        &["snapshot", "--width", size.0, "--height", size.1][..],
        args,
        &["-o", out],
    ]
    .concat())
}

/// [`snapshot`], failing the test with glstream's stderr if it fails.
pub fn snapshot_ok(out: &std::path::Path, size: (&str, &str), args: &[&str]) -> Output {
    let output = snapshot(out, size, args);
    assert!(
        output.status.success(),
        "snapshot {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Renders `glstream snapshot --scene SCENE --frame FRAME` at 160×120 and compares it with
/// tests/golden/NAME_FFFF.png (tolerance 2, at most 0.5% outliers: enough for rounding between
/// rasterizers, far too little for a frame off by one step). A missing golden fails, unless
/// `GLSTREAM_BLESS=1`, which writes it for a person to review. The actual image and, on a
/// mismatch, the diff stay under Cargo's target temp dir.
pub fn check_golden(name: &str, scene: &str, frame: u64) {
    use std::path::Path;
    let name = format!("{name}_{frame:04}");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.png"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden");
    std::fs::create_dir_all(&out).unwrap();
    let actual = out.join(format!("{name}.actual.png"));
    let frame = frame.to_string();
    snapshot_ok(
        &actual,
        ("160", "120"),
        &["--scene", scene, "--frame", &frame],
    );
    if !golden.exists() {
        if std::env::var("GLSTREAM_BLESS").as_deref() == Ok("1") {
            std::fs::copy(&actual, &golden).unwrap();
            eprintln!(
                "wrote new golden {} — review it before committing",
                golden.display()
            );
            return;
        }
        panic!(
            "missing golden {}: create it with `GLSTREAM_BLESS=1 cargo test --release golden`, \
             look at it, and commit it",
            golden.display()
        );
    }
    let golden_str = golden.to_str().expect("utf-8 path");
    let actual_str = actual.to_str().expect("utf-8 temp path");
    let output = run(&[
        "compare",
        golden_str,
        actual_str,
        "--tolerance",
        "2",
        "--max-outliers",
        "0.5%",
    ]);
    assert!(
        output.status.success(),
        "{name} does not match its golden: {}{} (actual and diff under {})",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        out.display()
    );
}

/// Runs `command` with bash (`-o pipefail`, so a failing `glstream` before a `|` fails it too) in
/// `dir`, with the `glstream` under test first on the PATH, to completion (with a deadline).
pub fn run_shell(command: &str, dir: &std::path::Path) -> Output {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_glstream"))
        .parent()
        .expect("the binary is in a directory");
    let path = match std::env::var_os("PATH") {
        Some(path) => {
            let mut dirs = vec![bin_dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&path));
            std::env::join_paths(dirs).expect("PATH entries without ':'")
        }
        None => bin_dir.as_os_str().to_owned(),
    };
    use std::os::unix::process::CommandExt;
    let child = Command::new("bash")
        .args(["-o", "pipefail", "-c", command])
        // Its own process group, so that a pipeline past its deadline is killed whole.
        .process_group(0)
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.expect("collect the command's output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!("`{command}` did not finish in {TIMEOUT:?}");
        }
    }
}

/// Fails the test, saying what to install, unless `tool` can be run.
pub fn require_tool(tool: &str, version_flag: &str, package: &str) {
    match Command::new(tool)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => panic!(
            "{tool} cannot be run ({e}); install it: apt-get install {package} \
             (.ci/run installs it where it is missing)"
        ),
    }
}

/// `glstream bench` at a tiny size and frame count (20, unless `EXTRA` gives `--frames`) with
/// `EXTRA` arguments; fails the test with its output if it fails, and returns its last line, the
/// JSON report.
pub fn bench(extra: &[&str]) -> serde_json::Value {
    let frames: &[&str] = if extra.contains(&"--frames") {
        &[]
    } else {
        &["--frames", "20"]
    };
    let args = [
        &[
            "bench",
            "--width",
            "96",
            "--height",
            "64",
            "--warmup",
            "3",
            "--repeats",
            "1",
        ][..],
        frames,
        extra,
    ]
    .concat();
    let out = run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("bench printed nothing");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

/// A TCP client that connects and never reads, with a tiny receive buffer so it stalls at once.
pub fn stalled_client(addr: SocketAddr) -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket
}
