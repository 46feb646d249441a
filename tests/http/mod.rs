//! The HTTP output (`--http`) against real clients: a headless Chromium on the page, OpenCV's
//! `cv2.VideoCapture` on `/stream.mjpg`, `/frame.png` against `snapshot`, `/metrics` through the
//! Python Prometheus parser, and clients that misbehave. Chromium and chromedriver come from
//! Debian (`chromium`, `chromium-driver`); selenium, OpenCV and prometheus_client from
//! `<repo>/.venv`. A missing one fails the test saying what to install; none is skipped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use glstream::compare;
use glstream::pattern_code::decode_pattern;

use super::util::{Server, TIMEOUT, read_frames, run_command, snapshot_ok};
use super::{path_str, scratch};

/// Pattern frames big enough to decode after JPEG and a browser's scaling.
const PW: u32 = 160;
const PH: u32 = 120;
const PWS: &str = "160";
const PHS: &str = "120";

/// A server with `--http 0` and `args`; returns it with the HTTP address. With `--port` among
/// `args` the TCP listener's line comes first, and the HTTP line is looked for after it.
pub(crate) fn http_server(args: &[&str]) -> (Server, SocketAddr) {
    let args = [args, &["--http", "0"]].concat();
    let tcp = args.contains(&"--port");
    let server = Server::start_with(
        &args,
        if tcp {
            "listening on "
        } else {
            "http listening on "
        },
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let lines = format!("{}\n{}", server.ready_line(), server.stdout());
        if let Some(addr) = lines
            .lines()
            .find_map(|l| l.strip_prefix("http listening on http://"))
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        {
            return (server, addr);
        }
        assert!(Instant::now() < deadline, "no http line in {lines:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn pattern_server(args: &[&str]) -> (Server, SocketAddr) {
    let size = ["--scene", "pattern", "--width", PWS, "--height", PHS];
    http_server(&[&size[..], args].concat())
}

/// One HTTP response, read whole.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` as is (so tests can send what no client library would) and reads the answer
/// until the server closes. HTTP/1.0 without keep-alive, so the server closes after answering.
pub(crate) fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP port");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read the response");
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Response {
        status,
        head,
        body: bytes[split + 4..].to_vec(),
    }
}

pub(crate) fn get(addr: SocketAddr, path: &str) -> Response {
    exchange(
        addr,
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

/// `<repo>/.venv/bin/python` able to import `modules`; fails (never skips) saying how to make it.
fn python(modules: &str) -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let how = "create it with `python3 -m venv .venv && .venv/bin/pip install pyzmq numpy \
               opencv-python-headless selenium prometheus-client` at the repository root \
               (.ci/run does)";
    assert!(python.exists(), "{} is missing: {how}", python.display());
    let check = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{} cannot import {modules} ({}): {how}",
        python.display(),
        String::from_utf8_lossy(&check.stderr).trim()
    );
    python
}

/// Runs one of the scripts beside this file and returns its last stdout line as JSON.
fn script(modules: &str, name: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/http")
        .join(name);
    let mut command = Command::new(python(modules));
    command.arg(path).args(args);
    let output = run_command(command);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name} {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {stdout}"))
}

/// An image file as RGBA at `PW`×`PH` (scaled with nearest-neighbour if it is not), rows
/// bottom-up as the pattern decoder wants them.
fn pattern_rgba(path: &Path) -> (image::RgbaImage, Vec<u8>) {
    let image = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    let image = if image.dimensions() == (PW, PH) {
        image
    } else {
        image::imageops::resize(&image, PW, PH, image::imageops::FilterType::Nearest)
    };
    let stride = (PW * 4) as usize;
    let bottom_up: Vec<u8> = image
        .as_raw()
        .chunks_exact(stride)
        .rev()
        .flatten()
        .copied()
        .collect();
    (image, bottom_up)
}

fn decoded_index(path: &Path) -> u64 {
    let (_, bottom_up) = pattern_rgba(path);
    decode_pattern(&bottom_up, PW, PH)
        .unwrap_or_else(|| panic!("{} is not a readable pattern frame", path.display()))
}

/// `snapshot --scene pattern --frame INDEX` at the pattern size.
fn pattern_snapshot(dir: &Path, index: u64) -> image::RgbaImage {
    let path = dir.join(format!("snapshot_{index}.png"));
    let index = index.to_string();
    snapshot_ok(
        &path,
        (PWS, PHS),
        &["--scene", "pattern", "--frame", &index],
    );
    image::open(&path).unwrap().to_rgba8()
}

/// Fails the test, saying what to install, unless Chromium and chromedriver can run.
fn require_chromium() {
    for (tool, package) in [
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
    ] {
        let runs = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            runs,
            "{tool} cannot be run; install it: apt-get install chromium chromium-driver \
             (.ci/run installs them where they are missing); missing package: {package}"
        );
    }
}

#[test]
fn chromium_shows_live_frames_and_stats_that_update() {
    require_chromium();
    let (server, addr) = pattern_server(&[]);
    let dir = scratch("http-chromium");
    let report = script(
        "selenium",
        "browser.py",
        &[&format!("http://{addr}/"), path_str(&dir)],
    );
    let (first, second) = (&report["first"], &report["second"]);
    assert_eq!(report["natural"], serde_json::json!([PW, PH]), "{report}");
    assert_eq!(first["size"], format!("{PW}×{PH}"), "{report}");
    assert_eq!(first["format"], "rgba8", "{report}");
    assert_eq!(first["status"], "live", "{report}");
    assert_eq!(
        first["clients"], "1",
        "the page's stream is the one client: {report}"
    );
    // The stats update: the frame shown moves on, and an fps was measured.
    let frame =
        |stats: &serde_json::Value| stats["frame"].as_str().unwrap().parse::<u64>().unwrap();
    assert!(frame(second) > frame(first), "{report}");
    assert!(
        second["fps"].as_str().unwrap().parse::<f64>().unwrap() > 0.0,
        "{report}"
    );
    // The image shows live frames: the two captures differ, and the index they carry advances.
    let (shot1, shot2) = (dir.join("stream1.png"), dir.join("stream2.png"));
    assert_ne!(
        pattern_rgba(&shot1).0.as_raw(),
        pattern_rgba(&shot2).0.as_raw(),
        "two captures a while apart show the same picture"
    );
    let (index1, index2) = (decoded_index(&shot1), decoded_index(&shot2));
    assert!(index2 > index1, "index {index1} then {index2}");
    drop(server);
}

#[test]
fn opencv_reads_the_mjpeg_stream_and_frames_match_snapshots() {
    let (server, addr) = pattern_server(&[]);
    let dir = scratch("http-opencv");
    let report = script(
        "cv2",
        "opencv.py",
        &[&format!("http://{addr}/stream.mjpg"), "4", path_str(&dir)],
    );
    drop(server);
    for n in 0..4 {
        assert_eq!(
            report["shapes"][n],
            serde_json::json!([PH, PW, 3]),
            "{report}"
        );
        let path = dir.join(format!("frame_{n}.png"));
        let index = decoded_index(&path);
        let expected = pattern_snapshot(&dir, index);
        let (actual, _) = pattern_rgba(&path);
        // JPEG at quality 80: small errors everywhere, larger ones on a few pixels along the
        // pattern's hard edges.
        let result = compare(&expected, &actual, 48);
        assert!(
            result.over_tolerance * 100 <= result.total,
            "frame {index} differs from its snapshot beyond JPEG's error: {result:?}"
        );
        assert!(result.max_delta < 160, "frame {index}: {result:?}");
    }
}

#[test]
fn frame_png_is_the_snapshot_of_the_index_it_reports() {
    let (server, addr) = pattern_server(&["--port", "0"]);
    let dir = scratch("http-frame-png");
    // Once on an idle server (which renders frame 0 of a new run for it), once mid-stream.
    let mut client = None;
    for round in 0..2 {
        if round == 1 {
            let mut stream = server.connect();
            read_frames(&mut stream, 5);
            client = Some(stream);
        }
        let response = get(addr, "/frame.png");
        assert_eq!(response.status, 200, "{}", response.head);
        assert_eq!(response.header("content-type"), Some("image/png"));
        let index: u64 = response
            .header("x-frame-index")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no X-Frame-Index in {}", response.head));
        let path = dir.join(format!("frame_{round}.png"));
        std::fs::write(&path, &response.body).unwrap();
        let actual = image::open(&path).unwrap().to_rgba8();
        let expected = pattern_snapshot(&dir, index);
        assert_eq!(
            compare(&expected, &actual, 0).over_tolerance,
            0,
            "frame.png (index {index}) is not snapshot --frame {index}"
        );
        if round == 0 {
            assert_eq!(index, 0, "an idle server starts a new run at frame 0");
        }
    }
    drop(client);
}

/// The samples of a scrape, parsed by the Python Prometheus client's OpenMetrics parser.
fn scrape(addr: SocketAddr, dir: &Path, name: &str) -> serde_json::Value {
    let response = get(addr, "/metrics");
    assert_eq!(response.status, 200, "{}", response.head);
    let path = dir.join(name);
    std::fs::write(&path, &response.body).unwrap();
    let mut command = Command::new(python("prometheus_client"));
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http/metrics.py"))
        .stdin(std::fs::File::open(&path).unwrap());
    let output = run_command(command);
    assert!(
        output.status.success(),
        "/metrics does not parse as OpenMetrics: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        response.text()
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn metrics_parse_and_count_frames_without_waking_the_renderer() {
    let (server, addr) = pattern_server(&["--port", "0"]);
    let dir = scratch("http-metrics");
    let rendered = |samples: &serde_json::Value| {
        samples["glstream_frames_rendered_total{}"]
            .as_f64()
            .unwrap_or_else(|| panic!("no frames counter in {samples}"))
    };
    // Idle: scrapes and health checks are not clients.
    for _ in 0..3 {
        assert_eq!(rendered(&scrape(addr, &dir, "idle.txt")), 0.0);
        let health = get(addr, "/healthz");
        assert_eq!(health.status, 200, "{}", health.text());
        assert!(health.text().contains("idle"), "{}", health.text());
    }
    // A TCP client: frames flow, the counter advances, the client is counted under its output.
    let mut client = server.connect();
    read_frames(&mut client, 3);
    let before = scrape(addr, &dir, "before.txt");
    read_frames(&mut client, 10);
    let after = scrape(addr, &dir, "after.txt");
    assert!(rendered(&after) > rendered(&before), "{before}\n{after}");
    assert_eq!(
        after["glstream_clients_connected{output=\"tcp\"}"], 1.0,
        "{after}"
    );
    assert!(
        after["glstream_stage_seconds_count{stage=\"render\"}"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{after}"
    );
    assert!(after["glstream_bytes_sent_total{}"].as_f64().unwrap() > 0.0);
    let health = get(addr, "/healthz");
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(
        health.text().starts_with("ok: 1 client,"),
        "{}",
        health.text()
    );
}

#[test]
fn bad_requests_get_the_usual_answers_and_cost_nobody_else() {
    let (server, addr) = pattern_server(&["--max-clients", "1"]);
    assert_eq!(
        exchange(addr, b"POST /frame.png HTTP/1.0\r\n\r\n").status,
        405
    );
    assert_eq!(exchange(addr, b"DELETE / HTTP/1.0\r\n\r\n").status, 405);
    assert_eq!(get(addr, "/nothing/here").status, 404);
    let absurd = format!(
        "GET / HTTP/1.0\r\nX-Absurd: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert_eq!(exchange(addr, absurd.as_bytes()).status, 431);
    let head = exchange(addr, b"HEAD /stream.mjpg HTTP/1.0\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // Slow loris: connections that send half a request, or nothing, are closed after the
    // header timeout, and meanwhile everyone else is served at once.
    let lorises: Vec<TcpStream> = (0..8)
        .map(|n| {
            let mut stream = TcpStream::connect(addr).unwrap();
            if n % 2 == 0 {
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n")
                    .unwrap();
            }
            stream
        })
        .collect();
    let started = Instant::now();
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "requests waited {:?} behind slow clients",
        started.elapsed()
    );
    for mut loris in lorises {
        loris
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut rest = Vec::new();
        // Closed by the server (an empty read or a reset), not left open.
        let _ = loris.read_to_end(&mut rest);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a slow client was held {:?}",
            started.elapsed()
        );
    }
    // --max-clients covers viewers: with one watching, a second viewer and frame.png are refused.
    let mut viewer = TcpStream::connect(addr).unwrap();
    viewer
        .write_all(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        .unwrap();
    viewer.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut first = [0u8; 64];
    viewer.read_exact(&mut first).unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.starts_with("HTTP/1.") && first.contains(" 200 "),
        "{first:?}"
    );
    let refused = get(addr, "/stream.mjpg");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("--max-clients 1"),
        "{}",
        refused.text()
    );
    assert_eq!(get(addr, "/frame.png").status, 503);
    assert_eq!(get(addr, "/metrics").status, 200, "scrapes are not clients");
    drop(server);
}
