//! Issue 20, compressed frames: every codec and format round trip through the real producer and
//! `recv` and match `snapshot` of the same frame index (byte for byte when lossless), a v1
//! consumer refuses a v2 frame by its version, what cannot work is refused with one line, a
//! ZeroMQ farm compresses, and N MJPEG viewers cost one encoding per frame.

use super::*;
use std::io::BufRead;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

fn scratch(name: &str) -> std::path::PathBuf {
    super::scratch(&format!("compress-{name}"))
}

/// The first `listening on 127.0.0.1:PORT` address a server printed.
pub(crate) fn tcp_addr(server: &Server) -> String {
    server
        .ready_line()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("ready line {:?}", server.ready_line()))
        .trim()
        .to_string()
}

/// The Python block of docs/protocol.md that contains every one of `needles`, as written.
fn protocol_recipe(needles: &[&str]) -> String {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/protocol.md"))
            .unwrap();
    docs.split("```python\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .find(|block| needles.iter().all(|n| block.contains(n)))
        .unwrap_or_else(|| panic!("docs/protocol.md has no Python recipe with {needles:?}"))
        .to_string()
}

/// PSNR in dB between two images of the same size, over every byte.
fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Streams three frames compressed with `codec` in `format` over TCP into `recv --save`, and
/// compares each with `snapshot` of the same frame index: equal for lossless codecs, within
/// `min_psnr` for jpeg.
fn round_trip(codec: &str, format: &str, min_psnr: Option<f64>) {
    let dir = scratch(&format!("{}-{format}", codec.replace(':', "-")));
    let mut server = Server::start(&[
        "--width",
        W,
        "--height",
        H,
        "--format",
        format,
        "--header",
        "glstream",
        "--compress",
        codec,
        // 66 rows in three strips of 32, 32 and 2: a short last strip.
        "--compress-threads",
        "3",
        "--policy",
        "lossless",
        "--frames",
        "3",
    ]);
    let addr = tcp_addr(&server);
    let received = run_ok(&[
        "recv",
        "--connect",
        &addr,
        "--header",
        "glstream",
        "--frames",
        "3",
        "--save",
        path_str(&dir),
    ]);
    let summary = String::from_utf8_lossy(&received.stdout);
    assert!(
        summary.contains("MB/s decoded"),
        "{codec} {format}: {summary}"
    );
    assert!(server.wait().success(), "{}", server.stderr());
    for index in 0..3 {
        let shot = dir.join(format!("snapshot_{index}.png"));
        snapshot_ok(
            &shot,
            (W, H),
            &["--format", format, "--frame", &index.to_string()],
        );
        let expected = image::open(&shot).unwrap();
        let actual = image::open(dir.join(format!("frame_{index:06}.png"))).unwrap();
        assert_eq!(
            (expected.width(), expected.height(), expected.color()),
            (actual.width(), actual.height(), actual.color()),
            "{codec} {format} frame {index}"
        );
        match min_psnr {
            None => assert!(
                expected.as_bytes() == actual.as_bytes(),
                "{codec} {format}: frame {index} differs from snapshot --frame {index}"
            ),
            Some(min) => {
                let db = psnr(expected.as_bytes(), actual.as_bytes());
                assert!(db >= min, "{codec} {format} frame {index}: {db:.1} dB");
            }
        }
    }
}

#[test]
fn qoi_round_trips_the_formats_it_carries_byte_for_byte() {
    for format in ["rgba8", "bgra8", "rgb8"] {
        round_trip("qoi", format, None);
    }
}

#[test]
fn zstd_round_trips_every_format_byte_for_byte() {
    for format in ["rgba8", "bgra8", "rgb8", "gray8", "depth32f"] {
        round_trip("zstd", format, None);
    }
    round_trip("zstd:9", "rgba8", None);
}

#[test]
fn lz4_round_trips_every_format_byte_for_byte() {
    for format in ["rgba8", "bgra8", "rgb8", "gray8", "depth32f"] {
        round_trip("lz4", format, None);
    }
}

#[test]
fn jpeg_round_trips_colour_and_grey_within_its_loss() {
    for format in ["rgba8", "bgra8", "rgb8", "gray8"] {
        round_trip("jpeg:90", format, Some(30.0));
    }
}

#[test]
fn a_unix_socket_carries_compressed_frames_of_the_pattern_in_order() {
    let dir = scratch("unix");
    let socket = dir.join("s.sock");
    let mut server = Server::start_with(
        &[
            "--scene",
            "pattern",
            "--width",
            "160",
            "--height",
            "120",
            "--unix",
            path_str(&socket),
            "--header",
            "glstream",
            "--compress",
            "qoi",
            "--policy",
            "lossless",
            "--frames",
            "30",
        ],
        "listening on unix:",
    );
    let received = run_ok(&[
        "recv",
        "--unix",
        path_str(&socket),
        "--header",
        "glstream",
        "--frames",
        "30",
        "--verify-pattern",
    ]);
    let summary = String::from_utf8_lossy(&received.stdout);
    assert!(
        summary.contains("pattern: frames 0..=29 in order, 0 dropped"),
        "{summary}"
    );
    assert!(server.wait().success(), "{}", server.stderr());
}

/// The v1 reader docs/protocol.md gives consumers (Python), run as written against a
/// compressed stream: it must refuse the first frame by its version, never misread it.
#[test]
fn a_v1_consumer_refuses_a_v2_frame_by_its_version() {
    let reader = protocol_recipe(&["def read_frame(stream):", "v1"]);
    let mut server = Server::start(&[
        "--width",
        W,
        "--height",
        H,
        "--header",
        "glstream",
        "--compress",
        "zstd",
        "--frames",
        "1",
    ]);
    let addr = tcp_addr(&server);
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = format!(
        "{reader}\nimport socket\nstream = socket.create_connection(('{host}', {port})).makefile('rb')\n\
         try:\n    read_frame(stream)\nexcept ValueError as e:\n    print('refused:', e)\nelse:\n    print('misread')\n"
    );
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let output = Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run ({e}): run .ci/run", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("refused: not a glstream v1 header"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.wait();
}

#[test]
fn what_cannot_carry_a_codec_is_refused_with_one_line() {
    let size = ["--width", W, "--height", H, "--frames", "1"];
    let cases: [(&[&str], &str); 9] = [
        (
            &["--compress", "qoi"],
            "--compress qoi: the blender header cannot name a codec; use --header glstream",
        ),
        (
            &["--compress", "zstd", "--header", "blender32"],
            "the blender32 header cannot name a codec",
        ),
        (
            &["--compress", "lz4", "--header", "raw", "--stdout"],
            "the raw header cannot name a codec",
        ),
        (
            &[
                "--compress",
                "qoi",
                "--header",
                "glstream",
                "--format",
                "depth32f",
            ],
            "--compress qoi cannot carry depth32f frames",
        ),
        (
            &[
                "--compress",
                "qoi",
                "--header",
                "glstream",
                "--format",
                "gray8",
            ],
            "--compress qoi cannot carry gray8 frames",
        ),
        (
            &[
                "--compress",
                "jpeg",
                "--header",
                "glstream",
                "--format",
                "depth32f",
            ],
            "--compress jpeg cannot carry depth32f frames",
        ),
        (
            &["--compress", "zstd", "--shm", "glstream/compress-refused"],
            "none is asked for (shared memory and HTTP are never compressed)",
        ),
        (
            &[
                "--compress",
                "zstd",
                "--header",
                "glstream",
                "--compress-threads",
                "0",
            ],
            "--compress-threads 0: must be between 1 and 256",
        ),
        (
            &["--compress-threads", "2"],
            "--compress-threads: give --compress too",
        ),
    ];
    for (args, needle) in cases {
        let output = run(&[&size[..], args].concat());
        assert_clean_failure(&output, needle);
    }
    for (bad, needle) in [
        ("zstd:0", "zstd's level must be 1 to 19"),
        ("jpeg:101", "jpeg's quality must be 1 to 100"),
        ("lz4:3", "lz4 takes no level"),
        ("png", "unknown codec \"png\""),
    ] {
        let output = run(&[&size[..], &["--header", "glstream", "--compress", bad]].concat());
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{bad}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_zmq_farm_that_compresses_is_collected_and_decoded_in_order() {
    use super::zmq::{collector, producer};
    let dir = scratch("zmq-farm");
    let (mut collector, endpoint) = collector(&[
        "--frames",
        "40",
        "--verify-pattern",
        "--save",
        path_str(&dir),
        "--every",
        "10",
    ]);
    let producers: Vec<Server> = ["zstd", "lz4"]
        .iter()
        .enumerate()
        .map(|(k, codec)| {
            let shard = format!("{k}/2");
            producer(
                &[
                    "--zmq-connect",
                    &endpoint,
                    "--shard",
                    &shard,
                    "--frames",
                    "40",
                    "--compress",
                    codec,
                ],
                "zmq push connecting to ",
            )
        })
        .collect();
    assert!(collector.wait().success(), "{}", collector.stderr());
    let report = collector.stdout();
    assert!(
        report.contains("40 distinct frames, indices 0..=39, 0 missing, 0 duplicates"),
        "{report}"
    );
    assert!(report.contains("MB/s decoded"), "{report}");
    for mut producer in producers {
        assert!(producer.wait().success(), "{}", producer.stderr());
    }
    // Frame 30 came from shard 0 (zstd), frame 10 too; both decode to snapshot's pixels.
    for index in [10u64, 30] {
        let shot = dir.join(format!("snapshot_{index}.png"));
        snapshot_ok(
            &shot,
            (super::zmq::ZW, super::zmq::ZH),
            &["--scene", "pattern", "--frame", &index.to_string()],
        );
        let expected = image::open(&shot).unwrap().to_rgba8();
        let actual = image::open(dir.join(format!("frame_{index:06}.png")))
            .unwrap()
            .to_rgba8();
        assert!(expected == actual, "frame {index} differs from snapshot");
    }
}

/// One MJPEG viewer: reads `parts` parts of `/stream.mjpg` and returns their frame indices.
fn watch(addr: SocketAddr, parts: usize) -> Vec<u64> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(util::TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut indices = Vec::new();
    let mut length = None;
    let mut line = String::new();
    while indices.len() < parts {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "viewer cut off");
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>().unwrap());
        } else if let Some(v) = lower.strip_prefix("x-frame-index:") {
            indices.push(v.trim().parse().unwrap());
        } else if line == "\r\n"
            && let Some(n) = length.take()
        {
            let mut jpeg = vec![0u8; n];
            reader.read_exact(&mut jpeg).unwrap();
            assert_eq!(&jpeg[..2], [0xff, 0xd8], "a part that is not a JPEG");
        }
    }
    indices
}

/// The encode stage's count of encodings, from /metrics.
fn encodes(addr: SocketAddr) -> u64 {
    let metrics = super::http::get(addr, "/metrics").text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("glstream_stage_seconds_count{stage=\"encode\"} "))
        .unwrap_or_else(|| panic!("no encode count in {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn three_mjpeg_viewers_cost_one_encoding_per_frame() {
    let (_server, addr) = super::http::pattern_server(&["--fps", "4", "--preview-fps", "4"]);
    let before = encodes(addr);
    let viewers: Vec<_> = (0..3)
        .map(|_| thread::spawn(move || watch(addr, 6)))
        .collect();
    let seen: Vec<Vec<u64>> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
    let after = encodes(addr);
    let mut distinct: Vec<u64> = seen.iter().flatten().copied().collect();
    distinct.sort();
    distinct.dedup();
    // Each frame any viewer got was encoded once; a viewer may be encoding one more frame
    // that it has not handed over yet when the metrics are read.
    let encoded = after - before;
    assert!(
        encoded <= distinct.len() as u64 + 3,
        "{encoded} encodings for {} distinct frames ({seen:?})",
        distinct.len()
    );
    assert!(
        seen.iter().flatten().count() > distinct.len(),
        "the viewers never shared a frame: {seen:?}"
    );
}

/// `recv` with no flag but the header reads a compressed stream from stdout too (through a
/// pipe into a Unix-socket-less consumer: `recv --connect` reads TCP, so this uses socat-free
/// plumbing: the producer writes stdout, the test relays it to a listener recv connects to).
#[test]
fn stdout_carries_compressed_frames_whole() {
    let output = Command::new(env!("CARGO_BIN_EXE_glstream"))
        .args([
            "--stdout",
            "--width",
            W,
            "--height",
            H,
            "--header",
            "glstream",
            "--compress",
            "lz4",
            "--frames",
            "4",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let relay = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = relay.local_addr().unwrap();
    let bytes = output.stdout.clone();
    let feeder = thread::spawn(move || {
        let (mut conn, _) = relay.accept().unwrap();
        conn.write_all(&bytes).unwrap();
    });
    let received = run_ok(&[
        "recv",
        "--connect",
        &addr.to_string(),
        "--header",
        "glstream",
        "--frames",
        "4",
    ]);
    feeder.join().unwrap();
    let summary = String::from_utf8_lossy(&received.stdout);
    assert!(summary.contains("received 4 frames 98x66"), "{summary}");
    // Version 2 headers, each naming lz4 (codec 3).
    assert_eq!(&output.stdout[..6], b"GLST\x02\x00");
    assert_eq!(output.stdout[28], 3);
}

/// The reader docs/protocol.md gives for both header versions and every codec, run as written
/// (Python, from `<repo>/.venv`) on each codec's stream and on an uncompressed one: the pixels
/// it returns are `snapshot`'s (within JPEG's loss).
#[test]
fn the_documented_python_reader_decodes_every_codec() {
    let reader = protocol_recipe(&["def read_any_frame(stream):"]);
    let dir = scratch("python-reader");
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    for (codec, format) in [
        (None, "rgba8"),
        (Some("qoi"), "rgba8"),
        (Some("zstd"), "gray8"),
        (Some("lz4"), "rgb8"),
        (Some("jpeg"), "rgba8"),
        (Some("jpeg"), "bgra8"),
    ] {
        let mut args = vec![
            "--width", W, "--height", H, "--header", "glstream", "--format", format, "--frames",
            "2", "--policy", "lossless",
        ];
        if let Some(codec) = codec {
            args.extend(["--compress", codec]);
        }
        let mut server = Server::start(&args);
        let addr = tcp_addr(&server);
        let (host, port) = addr.rsplit_once(':').unwrap();
        let out = dir.join(format!("{}-{format}.bin", codec.unwrap_or("none")));
        let script = format!(
            "{reader}\nimport socket\nstream = socket.create_connection(('{host}', {port})).makefile('rb')\n\
             frames = [read_any_frame(stream) for _ in range(2)]\n\
             assert read_any_frame(stream) is None\n\
             index, stamp, pixels = frames[1]\nassert index == 1\n\
             open({out:?}, 'wb').write(pixels.tobytes())\n"
        );
        let output = Command::new(&python)
            .args(["-c", &script])
            .output()
            .unwrap_or_else(|e| panic!("{} cannot run ({e}): run .ci/run", python.display()));
        assert!(
            output.status.success(),
            "{codec:?} {format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(server.wait().success(), "{}", server.stderr());
        let shot = dir.join(format!("snapshot-{format}.png"));
        snapshot_ok(&shot, (W, H), &["--format", format, "--frame", "1"]);
        let expected = image::open(&shot).unwrap();
        let mut expected = expected.as_bytes().to_vec();
        if format == "bgra8" {
            // snapshot's PNG is RGBA; the stream's bytes are B, G, R, A.
            for px in expected.chunks_exact_mut(4) {
                px.swap(0, 2);
            }
        }
        let actual = std::fs::read(&out).unwrap();
        match codec {
            Some("jpeg") => {
                let db = psnr(&expected, &actual);
                assert!(db >= 28.0, "jpeg {format}: {db:.1} dB");
            }
            _ => assert!(expected == actual, "{codec:?} {format}: pixels differ"),
        }
    }
}

/// The README's compression recipe, as written but for the address (loopback), the port (a
/// free one) and the frame count: the producer serves, `recv` decodes and prints the ratio.
#[test]
fn the_readme_compression_recipe_runs_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let line = |start: &str| -> String {
        let found: Vec<&str> = readme.lines().filter(|l| l.starts_with(start)).collect();
        assert_eq!(found.len(), 1, "README lines starting {start:?}: {found:?}");
        found[0].split("  #").next().unwrap().trim().to_string()
    };
    let server_line = line("glstream --bind 0.0.0.0 --port 9000 --header glstream");
    let args: Vec<String> = server_line
        .replace("--bind 0.0.0.0", "--bind 127.0.0.1")
        .replace("--port 9000", "--port 0")
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start_with(
        &[
            &args[..],
            &[
                "--width", W, "--height", H, "--frames", "12", "--policy", "lossless",
            ],
        ]
        .concat(),
        "listening on ",
    );
    let addr = tcp_addr(&server);
    let recv_line = line("glstream recv --connect RENDERHOST:9000 --header glstream");
    let recv: Vec<String> = recv_line
        .replace("RENDERHOST:9000", &addr)
        .replace("--frames 600", "--frames 12")
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    let recv: Vec<&str> = recv.iter().map(String::as_str).collect();
    let output = run_ok(&recv);
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains("received 12 frames 98x66") && summary.contains("MB/s decoded"),
        "{summary}"
    );
    assert!(server.wait().success(), "{}", server.stderr());
}
