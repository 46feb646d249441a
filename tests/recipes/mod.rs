//! The README's consumer recipes (ffmpeg over TCP and from stdin, GStreamer), run as the README
//! writes them: each command is taken from README.md itself, so the text a reader pastes is the
//! text tested. Only the size, the frame count and the port are changed (small and fast, a free
//! port), and GStreamer's window is swapped for a file. ffmpeg, ffprobe and gst-launch-1.0 must be
//! installed: without them these tests fail and say what to install (`.ci/run` installs them).

use std::path::Path;

use super::util::{Server, require_tool, run_ok, run_shell};
use super::{path_str, scratch};

/// README.md with shell line continuations joined, so each command is one line.
fn readme() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut joined = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut line = line.to_owned();
        while let Some(head) = line.strip_suffix('\\') {
            let next = lines.next().unwrap_or("").trim_start();
            line = format!("{} {next}", head.trim_end());
        }
        joined.push_str(&line);
        joined.push('\n');
    }
    joined
}

/// The one README line that starts with `start` and contains `containing`.
fn readme_command(start: &str, containing: &str) -> String {
    let matching: Vec<String> = readme()
        .lines()
        .filter(|line| line.starts_with(start) && line.contains(containing))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "README.md should have one command starting {start:?} with {containing:?}: {matching:?}"
    );
    matching.into_iter().next().unwrap()
}

/// `command` with each `from` replaced by its `to`; every `from` must be there, so a README that
/// drifts from what the test expects fails here rather than testing something else.
fn adapt(command: &str, replacements: &[(&str, &str)]) -> String {
    let mut adapted = command.to_owned();
    for (from, to) in replacements {
        assert!(
            adapted.contains(from),
            "{from:?} not in README command `{command}`"
        );
        adapted = adapted.replace(from, to);
    }
    adapted
}

/// Test size and length in place of the README's 800x600, 300 frames.
const SMALL: [(&str, &str); 2] = [
    ("--width 800", "--width 160"),
    ("--height 600", "--height 120"),
];
const FRAMES: u64 = 12;

/// Starts the README's server line (`glstream ... &`) with `replacements`, on a free port.
fn readme_server(line: &str, replacements: &[(&str, &str)]) -> Server {
    let line = adapt(line, replacements);
    let args = line
        .strip_prefix("glstream ")
        .and_then(|l| l.strip_suffix(" &"))
        .unwrap_or_else(|| panic!("not a `glstream ... &` line: {line}"));
    let args: Vec<&str> = args.split_whitespace().collect();
    Server::start_with(&args, "listening on ")
}

/// ffprobe's frame count and size of a video file, as "W,H,N".
fn probe(video: &Path) -> String {
    let output = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(video)
        .output()
        .expect("run ffprobe");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        video.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn require_ffmpeg() {
    require_tool("ffmpeg", "-version", "ffmpeg");
    require_tool("ffprobe", "-version", "ffmpeg");
}

/// `snapshot`'s frame 0 at 160x120 (written into `dir`): what a recipe's first frame must be.
fn frame_zero(dir: &Path) -> image::RgbaImage {
    let shot = dir.join("frame0.png");
    run_ok(&[
        "snapshot",
        "--width",
        "160",
        "--height",
        "120",
        "--frame",
        "0",
        "-o",
        path_str(&shot),
    ]);
    image::open(&shot).unwrap().to_rgba8()
}

#[test]
fn ffmpeg_records_every_frame_over_tcp() {
    require_ffmpeg();
    let dir = scratch("recipe-ffmpeg-tcp");
    let frames = FRAMES.to_string();
    let server = readme_server(
        &readme_command(
            "glstream --header raw --flip --policy lossless",
            "--frames 300",
        ),
        &[
            SMALL[0],
            SMALL[1],
            ("--frames 300", &format!("--frames {frames}")),
            ("9000", "0"),
        ],
    );
    let port = server.addr.port().to_string();
    let ffmpeg = adapt(
        &readme_command("ffmpeg ", "tcp://127.0.0.1:9000"),
        &[("800x600", "160x120"), ("9000", &port)],
    );
    let output = run_shell(&ffmpeg, &dir);
    assert!(
        output.status.success(),
        "`{ffmpeg}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        probe(&dir.join("recording.mp4")),
        format!("160,120,{FRAMES}")
    );
}

#[test]
fn ffmpeg_records_every_frame_from_stdout() {
    require_ffmpeg();
    let dir = scratch("recipe-ffmpeg-stdout");
    let pipeline = adapt(
        &readme_command("glstream --stdout --header raw", "| ffmpeg "),
        &[
            ("--width 800 --height 600", "--width 160 --height 120"),
            ("800x600", "160x120"),
            ("--frames 300", &format!("--frames {FRAMES}")),
        ],
    );
    let output = run_shell(&pipeline, &dir);
    assert!(
        output.status.success(),
        "`{pipeline}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        probe(&dir.join("from-stdout.mp4")),
        format!("160,120,{FRAMES}")
    );
}

#[test]
fn gstreamer_shows_the_frames_the_right_way_up() {
    require_tool("gst-launch-1.0", "--version", "gstreamer1.0-tools");
    let dir = scratch("recipe-gstreamer");
    // The README's server streams until stopped and its window shows what arrives; here the
    // server stops after a few frames, each of which must arrive (lossless), so the pipeline
    // ends and the file holds them all. The pipeline is the README's with the sink swapped.
    let server = readme_server(
        &readme_command("glstream --header raw --flip --width 800", "--port 9000 &"),
        &[
            SMALL[0],
            SMALL[1],
            ("--port 9000", "--frames 3 --policy lossless --port 0"),
        ],
    );
    let port = server.addr.port().to_string();
    let pipeline = adapt(
        &readme_command("gst-launch-1.0 ", "autovideosink"),
        &[
            ("port=9000", &format!("port={port}")),
            ("width=800 height=600", "width=160 height=120"),
            ("autovideosink", "filesink location=frames.rgba"),
        ],
    );
    let output = run_shell(&pipeline, &dir);
    assert!(
        output.status.success(),
        "`{pipeline}` failed (needs gstreamer1.0-plugins-base for tcpclientsrc, rawvideoparse and \
         videoconvert): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let raw = std::fs::read(dir.join("frames.rgba")).unwrap();
    let frame_bytes = 160 * 120 * 4;
    assert_eq!(raw.len(), 3 * frame_bytes, "three whole frames");
    // Frame 0 as GStreamer delivered it is snapshot's frame 0: the same pixels, the same way up.
    let expected = frame_zero(&dir);
    assert!(
        expected.as_raw()[..] == raw[..frame_bytes],
        "GStreamer's first frame is not snapshot's frame 0 (upside down?)"
    );
}

/// The README's Blender consumer, run as written against a real server (only the port is
/// changed): it reads every frame until the server closes the stream, and its top-down image is
/// snapshot's, pixel for pixel at the corner it prints.
#[test]
fn the_readme_blender_consumer_runs_as_written() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ready = std::process::Command::new(&python)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ready,
        "{} cannot import numpy; create it: python3 -m venv .venv && .venv/bin/pip install numpy \
         (.ci/run does this)",
        python.display()
    );
    let text = readme();
    let blocks: Vec<&str> = text
        .split("```python\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .filter(|block| block.contains("struct.unpack(\"<QHH\", header)"))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "README.md should have one Blender consumer"
    );
    let server = Server::start(&[
        "--width", "160", "--height", "120", "--frames", "5", "--policy", "lossless",
    ]);
    let script = adapt(
        blocks[0],
        &[(
            "(\"127.0.0.1\", 9000)",
            &format!("(\"127.0.0.1\", {})", server.addr.port()),
        )],
    );
    let dir = scratch("recipe-blender-consumer");
    let path = dir.join("consumer.py");
    std::fs::write(&path, script).unwrap();
    let mut command = std::process::Command::new(&python);
    command.arg(&path);
    let output = super::util::run_command(command);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "one line per frame: {stdout}");
    let corner = frame_zero(&dir).get_pixel(0, 0).0;
    let printed: Vec<u8> = lines[0]
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(numbers, _)| {
            numbers
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect()
        })
        .unwrap_or_else(|| panic!("no pixel in {:?}", lines[0]));
    assert!(
        lines[0].starts_with("160x120, top-left pixel ["),
        "{}",
        lines[0]
    );
    assert_eq!(printed, corner, "frame 0's top-left pixel, rows top-down");
}
