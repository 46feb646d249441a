//! Issue 23, the control channel: requests set a shader's uniforms by name, move the camera and
//! glTF nodes, are refused whole when any part is wrong, and with `--on-request` each is exactly
//! one frame, tagged with its id on TCP, shared memory and ZeroMQ; a thousand pipelined requests
//! are answered in order; malformed, oversized and unread requests cost only themselves.

use super::*;
use std::path::Path;
use std::process::Command;

fn scratch(name: &str) -> std::path::PathBuf {
    super::scratch(&format!("control-{name}"))
}

fn python() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Runs `script` with the repository's venv Python (pyzmq, iceoryx2, numpy), with `args`;
/// fails the test with its stderr unless it succeeds; returns its stdout.
fn run_python(script: &str, args: &[&str]) -> String {
    let mut command = Command::new(python());
    command.arg("-c").arg(script).args(args);
    let output = util::run_command(command);
    assert!(
        output.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `script` with `args` once the server has logged each of `logs` (its consumers are
/// registered): the script connects its consumers, prints a line and waits for one on stdin
/// before it sends requests. Returns its stdout.
fn run_python_when(server: &Server, script: &str, args: &[&str], logs: &[&str]) -> String {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run .venv/bin/python (.ci/run makes it)");
    for log in logs {
        assert!(
            server.wait_for_log(log),
            "no {log:?} in {}",
            server.stderr()
        );
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// Starts glstream with `args` and debug logs (which say when a consumer is registered).
fn debug_server(args: &[&str]) -> (Server, String, String) {
    let mut command = util::glstream();
    command
        .env("RUST_LOG", "glstream=debug")
        .args(["--port", "0"])
        .args(args);
    addresses(Server::spawn(command, "listening on "))
}

/// `server` with its TCP address and its control endpoint.
fn addresses(server: Server) -> (Server, String, String) {
    let tcp = super::compress::tcp_addr(&server);
    let control = control_endpoint(&server);
    (server, tcp, control)
}

/// A shader whose colour is two uniforms: `u_color * u_gain`.
const SHADER: &str = "uniform vec3 u_color;\nuniform float u_gain;\nuniform int u_mode;\n\
    void mainImage(out vec4 fragColor, in vec2 fragCoord) {\n\
    fragColor = vec4(u_mode == 1 ? vec3(1.0) - u_color * u_gain : u_color * u_gain, 1.0);\n}\n";

fn shader_file(dir: &Path) -> String {
    let path = dir.join("uniforms.frag");
    std::fs::write(&path, SHADER).unwrap();
    path.to_str().unwrap().to_string()
}

/// What follows `prefix` on the server's first stdout line that starts with it (read by
/// another thread: waited for).
fn stdout_line(server: &Server, prefix: &str) -> String {
    let deadline = std::time::Instant::now() + util::TIMEOUT;
    loop {
        let lines = format!("{}\n{}", server.ready_line(), server.stdout());
        if let Some(rest) = lines.lines().find_map(|l| l.strip_prefix(prefix)) {
            return rest.trim().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {prefix:?} line in {lines:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The endpoint on the `control listening on ENDPOINT` line.
fn control_endpoint(server: &Server) -> String {
    stdout_line(server, "control listening on ")
}

/// Shared by the Python clients below: a REQ client, and a reader of glstream v2 frames.
const CLIENT: &str = r#"
import json, socket, struct, sys, zmq
ctx = zmq.Context()
def control(endpoint):
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.RCVTIMEO, 120000)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    def send(obj):
        s.send(json.dumps(obj).encode())
        return json.loads(s.recv())
    return send
def frames(address):
    host, port = address.rsplit(":", 1)
    stream = socket.create_connection((host, int(port)), timeout=120).makefile("rb")
    def read():
        head = stream.read(56)
        magic, version, size = struct.unpack_from("<4sHH", head)
        assert magic == b"GLST" and version == 2, (magic, version)
        rest = stream.read(size - 56)
        length, = struct.unpack_from("<Q", head, 48)
        index, = struct.unpack_from("<Q", head, 32)
        request, = struct.unpack_from("<Q", rest, 8)
        return index, request, stream.read(length)
    return read
"#;

fn serve(args: &[&str]) -> (Server, String, String) {
    addresses(Server::start(args))
}

#[test]
fn uniforms_set_by_name_change_the_pixels_as_the_shader_says_and_bad_ones_change_nothing() {
    let dir = scratch("uniforms");
    let shader = shader_file(&dir);
    let (mut server, tcp, control) = debug_server(&[
        "--scene",
        &shader,
        "--width",
        "32",
        "--height",
        "24",
        "--header",
        "glstream",
        "--control",
        "tcp://127.0.0.1:*",
        "--on-request",
        "--frames",
        "3",
    ]);
    let script = format!(
        "{CLIENT}\nsend = control(sys.argv[1]); read = frames(sys.argv[2])\n\
         print('connected', flush=True); sys.stdin.readline()\n\
         print(json.dumps(send({{'id': 11, 'uniforms': {{'u_color': [1, 0.5, 0], 'u_gain': 1.0}}}})))\n\
         print(json.dumps(list(read()[2][:4])))\n\
         print(json.dumps(send({{'id': 12, 'uniforms': {{'u_gain': 0.5, 'u_colour': [0, 0, 1]}}}})))\n\
         print(json.dumps(send({{'id': 13, 'uniforms': {{'u_gain': 0.5, 'u_color': [0, 1]}}}})))\n\
         print(json.dumps(send({{'id': 14, 'uniforms': {{'u_mode': 1.5}}}})))\n\
         print(json.dumps(send({{'id': 15, 'camera': {{'fov_deg': 30}}}})))\n\
         print(json.dumps(send({{'id': 16, 'frame': 7}})))\n\
         print(json.dumps(list(read()[2][:4])))\n\
         print(json.dumps(send({{'id': 17, 'uniforms': {{'u_mode': 1, 'u_gain': 0.5}}}})))\n\
         print(json.dumps(list(read()[2][:4])))\n"
    );
    let out = run_python_when(&server, &script, &[&control, &tcp], &[" connected\n"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({"id": 11, "ok": true, "frame": 0})
    );
    assert_eq!(lines[1], serde_json::json!([255, 128, 0, 255]), "{out}");
    for (line, id, needle) in [
        (&lines[2], 12, "declares no such uniform"),
        (&lines[3], 13, "u_color is a vec3, not 2 numbers"),
        (&lines[4], 14, "u_mode is an int, not 1.5"),
        (&lines[5], 15, "the shader scene has no camera"),
    ] {
        assert_eq!(line["id"], id, "{out}");
        assert_eq!(line["ok"], false, "{out}");
        assert!(line["error"].as_str().unwrap().contains(needle), "{out}");
    }
    // Refused whole: u_gain stayed 1.0 although request 12 and 13 named it.
    assert_eq!(
        lines[6],
        serde_json::json!({"id": 16, "ok": true, "frame": 7})
    );
    assert_eq!(lines[7], serde_json::json!([255, 128, 0, 255]), "{out}");
    // The int and the float together: 1 - (1, 0.5, 0) * 0.5.
    assert_eq!(lines[8]["ok"], true, "{out}");
    assert_eq!(lines[9], serde_json::json!([128, 191, 255, 255]), "{out}");
    assert!(server.wait().success(), "{}", server.stderr());
}

#[test]
fn on_request_renders_one_frame_per_request_tagged_on_tcp_shm_and_zmq() {
    let dir = scratch("tagged");
    let shader = shader_file(&dir);
    let service = format!("glstream/test-control-{}", std::process::id());
    // Debug logs say when each consumer is registered: the requests go out only then, so that
    // every output has a consumer for frame one.
    let (server, tcp, control) = debug_server(&[
        "--scene",
        &shader,
        "--width",
        "32",
        "--height",
        "24",
        "--header",
        "glstream",
        "--shm",
        &service,
        "--policy",
        "lossless",
        "--zmq-bind",
        "tcp://127.0.0.1:*",
        "--control",
        "tcp://127.0.0.1:*",
        "--on-request",
    ]);
    let zmq_endpoint = stdout_line(&server, "zmq push listening on ");
    let script = format!(
        "{CLIENT}\n\
import ctypes, time, iceoryx2 as iox2
class FrameHeader(ctypes.Structure):
    _fields_ = [('frame_index', ctypes.c_uint64), ('timestamp_ns', ctypes.c_uint64),
                ('width', ctypes.c_uint32), ('height', ctypes.c_uint32),
                ('format', ctypes.c_uint32), ('flags', ctypes.c_uint32),
                ('stride', ctypes.c_uint32), ('reserved', ctypes.c_uint32),
                ('request_id', ctypes.c_uint64)]
    @staticmethod
    def type_name():
        return 'glstream::FrameHeader'
node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
service = (node.service_builder(iox2.ServiceName.new(sys.argv[4]))
           .publish_subscribe(iox2.Slice[ctypes.c_uint8]).user_header(FrameHeader).open())
subscriber = service.subscriber_builder().create()
pull = ctx.socket(zmq.PULL); pull.setsockopt(zmq.RCVTIMEO, 120000); pull.connect(sys.argv[3])
read = frames(sys.argv[2]); send = control(sys.argv[1])
print('connected', flush=True)
sys.stdin.readline()
answers = [send({{'id': 100 + i, 'frame': 10 * i, 'uniforms': {{'u_gain': i / 4}}}}) for i in range(5)]
tcp = [read()[:2] for _ in range(5)]
zmq_frames = []
for _ in range(5):
    head, payload = pull.recv_multipart()
    zmq_frames.append((struct.unpack_from('<Q', head, 32)[0], struct.unpack_from('<Q', head, 64)[0]))
shm = []
deadline = time.time() + 120
while len(shm) < 5 and time.time() < deadline:
    sample = subscriber.receive()
    if sample is None:
        node.wait(iox2.Duration.from_millis(5)); continue
    h = sample.user_header().contents
    shm.append((h.frame_index, h.request_id)); sample.delete()
# Nothing more than one frame per request: no sixth frame anywhere.
pull.setsockopt(zmq.RCVTIMEO, 500)
try:
    pull.recv_multipart(); extra = True
except zmq.Again:
    extra = False
print(json.dumps({{'answers': answers, 'tcp': tcp, 'zmq': zmq_frames, 'shm': shm, 'extra': extra}}))
"
    );
    let out = run_python_when(
        &server,
        &script,
        &[&control, &tcp, &zmq_endpoint, &service],
        &[" connected\n", "subscribed"],
    );
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let expected: Vec<serde_json::Value> = (0..5)
        .map(|i| serde_json::json!([10 * i, 100 + i]))
        .collect();
    for (i, answer) in report["answers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            answer,
            &serde_json::json!({"id": 100 + i, "ok": true, "frame": 10 * i}),
            "{out}"
        );
    }
    for output in ["tcp", "zmq", "shm"] {
        assert_eq!(
            report[output].as_array().unwrap(),
            &expected,
            "{output}: {out}"
        );
    }
    assert_eq!(report["extra"], false, "{out}");
    drop(server);
}

#[test]
fn a_thousand_pipelined_requests_are_all_answered_in_order() {
    let dir = scratch("thousand");
    let shader = shader_file(&dir);
    // Steering a running stream: one request per frame, whatever the pace.
    let (server, tcp, control) = serve(&[
        "--scene",
        &shader,
        "--width",
        "16",
        "--height",
        "16",
        "--header",
        "glstream",
        "--control",
        "tcp://127.0.0.1:*",
    ]);
    let script = format!(
        "{CLIENT}\nread = frames(sys.argv[2])\n\
dealer = ctx.socket(zmq.DEALER); dealer.setsockopt(zmq.RCVTIMEO, 120000); dealer.connect(sys.argv[1])
for i in range(1, 1001):
    dealer.send_multipart([b'', json.dumps({{'id': i, 'uniforms': {{'u_gain': (i % 7) / 7}}}}).encode()])
ids = []
for _ in range(1000):
    empty, body = dealer.recv_multipart()
    answer = json.loads(body)
    assert answer['ok'], answer
    ids.append(answer['id'])
print(json.dumps(ids == list(range(1, 1001))))
"
    );
    let out = run_python(&script, &[&control, &tcp]);
    assert_eq!(out.trim(), "true", "answers out of order or missing: {out}");
    drop(server);
}

#[test]
fn malformed_oversized_and_unread_requests_cost_only_themselves() {
    let dir = scratch("hostile");
    let shader = shader_file(&dir);
    let (server, tcp, control) = serve(&[
        "--scene",
        &shader,
        "--width",
        "16",
        "--height",
        "16",
        "--header",
        "glstream",
        "--control",
        "tcp://127.0.0.1:*",
        "--on-request",
    ]);
    let script = format!(
        "{CLIENT}\n\
import time
results = {{}}
# A consumer: with --on-request, a request waits for one.
read = frames(sys.argv[2])
send = control(sys.argv[1])
for name, body in [('garbage', b'{{not json'), ('array', b'[1, 2]'), ('no id', b'{{}}'), ('bad key', b'{{\"id\": 5, \"colour\": 1}}')]:
    s = ctx.socket(zmq.REQ); s.setsockopt(zmq.RCVTIMEO, 120000); s.setsockopt(zmq.LINGER, 0)
    s.connect(sys.argv[1]); s.send(body); results[name] = json.loads(s.recv()); s.close()
# Oversized: ZeroMQ drops this peer before reading the message; it never gets an answer.
big = ctx.socket(zmq.REQ); big.setsockopt(zmq.RCVTIMEO, 2000); big.setsockopt(zmq.LINGER, 0)
big.connect(sys.argv[1]); big.send(b'{{\"id\": 9, \"pad\": \"' + b'x' * 100000 + b'\"}}')
try:
    big.recv(); results['oversized'] = 'answered'
except zmq.Again:
    results['oversized'] = 'dropped'
# Unread: 50 requests sent, no answer ever read, then the client goes.
lazy = ctx.socket(zmq.DEALER); lazy.setsockopt(zmq.LINGER, 0); lazy.connect(sys.argv[1])
for i in range(50):
    lazy.send_multipart([b'', json.dumps({{'id': 1000 + i}}).encode()])
time.sleep(0.5); lazy.close()
results['after'] = send({{'id': 77, 'uniforms': {{'u_gain': 1}}}})
print(json.dumps(results))
"
    );
    let out = run_python(&script, &[&control, &tcp]);
    let results: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for name in ["garbage", "array", "no id"] {
        assert_eq!(results[name]["ok"], false, "{out}");
        assert_eq!(results[name]["id"], serde_json::Value::Null, "{out}");
    }
    assert_eq!(results["bad key"]["id"], 5, "{out}");
    assert!(
        results["bad key"]["error"]
            .as_str()
            .unwrap()
            .contains("unknown key \"colour\""),
        "{out}"
    );
    assert_eq!(results["oversized"], "dropped", "{out}");
    assert_eq!(results["after"]["id"], 77, "{out}");
    assert_eq!(results["after"]["ok"], true, "{out}");
    drop(server);
}

/// `snapshot --request` renders what a controller would: the camera moves the cube, a node
/// moves in a glTF model, and a request the scene cannot apply fails with one line.
#[test]
fn snapshot_applies_a_request_file_camera_and_nodes() {
    let dir = scratch("snapshot");
    let request = |name: &str, json: &str| {
        let path = dir.join(name);
        std::fs::write(&path, json).unwrap();
        path.to_str().unwrap().to_string()
    };
    let shot = |name: &str, args: &[&str]| {
        let out = dir.join(name);
        snapshot_ok(&out, ("64", "48"), args);
        image::open(&out).unwrap().to_rgba8()
    };
    let plain = shot("cube.png", &["--frame", "3"]);
    let moved = request(
        "camera.json",
        r#"{"id": 1, "frame": 3, "camera": {"eye": [3, 2, 3], "fov_deg": 30}}"#,
    );
    let steered = shot("cube-camera.png", &["--request", &moved]);
    assert!(plain != steered, "the camera did not move");
    // The same request twice: the same image (settings are a pure function of the request).
    assert!(steered == shot("cube-camera-again.png", &["--request", &moved]));
    // A request with only the camera part the file names, the frame from --frame, is the same
    // image as one that names the frame.
    let no_frame = request(
        "camera-only.json",
        r#"{"id": 1, "camera": {"eye": [3, 2, 3], "fov_deg": 30}}"#,
    );
    assert!(
        steered
            == shot(
                "cube-camera-frame.png",
                &["--request", &no_frame, "--frame", "3"]
            )
    );

    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/assets/model.gltf");
    let model = model.to_str().unwrap();
    let still = shot("model.png", &["--scene", model]);
    let node = request(
        "node.json",
        r#"{"id": 2, "nodes": {"red cube": {"translation": [0, 0.8, 0], "scale": [0.5, 0.5, 0.5]}}}"#,
    );
    let moved = shot("model-node.png", &["--scene", model, "--request", &node]);
    assert!(still != moved, "the node did not move");

    for (json, needle) in [
        (
            r#"{"id": 3, "nodes": {"blue cube": {"scale": [2, 2, 2]}}}"#,
            "node \"blue cube\": ",
        ),
        (
            r#"{"id": 3, "uniforms": {"u_x": 1}}"#,
            "has no settable uniforms",
        ),
        (
            r#"{"id": 3, "camera": {"eye": [0, 0, 0], "target": [0, 0, 0]}}"#,
            "same point",
        ),
        (r#"{"id": 3"#, "not a JSON object"),
    ] {
        let bad = request("bad.json", json);
        let output = util::snapshot(
            &dir.join("bad.png"),
            ("64", "48"),
            &["--scene", model, "--request", &bad],
        );
        assert_clean_failure(&output, needle);
        assert!(!dir.join("bad.png").exists());
    }
}

#[test]
fn control_flags_are_checked_before_anything_starts() {
    for (args, needle) in [
        (
            &["--on-request"][..],
            "--on-request renders what control requests ask: give --control too",
        ),
        (&["--control", "udp://x"][..], "--control udp://x"),
        (&["--control", "0"][..], "--control 0: not a port"),
        (
            &[
                "--control",
                "5555",
                "--shard",
                "0/2",
                "--header",
                "glstream",
            ][..],
            "--control with --shard",
        ),
    ] {
        assert_clean_failure(&run(args), needle);
    }
}
