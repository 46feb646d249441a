//! The HTTP output against hostile and careless clients, and what its numbers mean: clients
//! that send requests and never read their answers, requests for another host name (DNS
//! rebinding), CORS, and `/stats.json`'s frame index and dropped-frame count.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use glstream::stream::SPARE_CONNECTIONS;

use super::http::{Response, exchange, get, http_server, pattern_server};
use super::util::{TIMEOUT, assert_clean_failure, read_frames, run, stalled_client};

fn stats(addr: SocketAddr) -> serde_json::Value {
    let response = get(addr, "/stats.json");
    assert_eq!(response.status, 200, "{}", response.text());
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{e}: {}", response.text()))
}

/// `GET path` with `Host: host`.
fn get_as(addr: SocketAddr, host: &str, path: &str) -> Response {
    exchange(
        addr,
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
}

/// `GET path` on a fresh connection; `None` when the server closed it without answering (it
/// refuses connections beyond its limit at accept).
fn try_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let head = String::from_utf8_lossy(&bytes);
    head.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn clients_that_never_read_are_dropped_and_health_checks_get_through() {
    let max_clients = 2;
    let (server, addr) = pattern_server(&[
        "--max-clients",
        &max_clients.to_string(),
        "--send-timeout",
        "3",
    ]);
    // More connections than the server keeps open (--max-clients + SPARE_CONNECTIONS), each
    // pipelining requests and reading nothing. The answers to what each sends are over 8 MB,
    // more than any socket buffers hold (the server's send buffer grows to 4 MB at most; the
    // client's receive buffer is 4 KiB), so the server ends up stuck writing to every one of
    // them. Most ask for the page; some for frame.png first; one is an MJPEG viewer.
    let page_bytes = get(addr, "/").body.len();
    let pipelined = (8 << 20) / page_bytes + 1;
    let page = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(pipelined);
    let png = "GET /frame.png HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let stallers: Vec<_> = (0..max_clients + SPARE_CONNECTIONS + 8)
        .map(|n| {
            let requests = match n % 8 {
                0 => format!("{png}{page}"),
                1 => "GET /stream.mjpg HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
                _ => page.clone(),
            };
            thread::spawn(move || {
                let mut socket = stalled_client(addr);
                socket.set_write_timeout(Some(TIMEOUT)).unwrap();
                // The kernel takes it all (the server's receive buffer is larger) unless the
                // server closed the connection at accept.
                let _ = socket.write_all(requests.as_bytes());
                socket
            })
        })
        .collect();
    let held: Vec<_> = stallers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        server.wait_for_log("connections open"),
        "the stalled clients never filled the server's connections:\n{}",
        server.stderr()
    );
    // Every stalled connection is closed at its write deadline, so a health check gets an
    // answer (the server refuses it at accept until then).
    let started = Instant::now();
    loop {
        if let Some(status) = try_get(addr, "/healthz") {
            assert_eq!(status, 200);
            break;
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "/healthz got no answer for {TIMEOUT:?} while {} clients read nothing:\n{}",
            held.len(),
            server.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.wait_for_log("did not read a response within --send-timeout"),
        "{}",
        server.stderr()
    );
    assert_eq!(get(addr, "/").status, 200);
    drop(held);
}

#[test]
fn other_host_names_are_refused_on_loopback_and_nothing_allows_other_origins() {
    let (server, addr) = http_server(&["--scene", "pattern", "--width", "64", "--height", "48"]);
    let port = addr.port();
    for path in [
        "/frame.png",
        "/metrics",
        "/stats.json",
        "/",
        "/stream.mjpg",
        "/healthz",
    ] {
        for host in ["evil.example".to_string(), format!("evil.example:{port}")] {
            let response = get_as(addr, &host, path);
            assert_eq!(
                response.status,
                421,
                "Host {host} {path}: {}",
                response.text()
            );
            assert!(
                response.text().contains("--http-allow-host"),
                "{}",
                response.text()
            );
        }
    }
    // An absolute URI names the host too, whatever Host says.
    let absolute = exchange(
        addr,
        b"GET http://evil.example/stats.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(absolute.status, 421);
    // Nothing was rendered for them.
    assert_eq!(stats(addr)["frames_rendered"], 0);
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".into(),
        "LocalHost.".into(),
        "127.0.0.1".into(),
        "127.1.2.3".into(),
    ] {
        let response = get_as(addr, &host, "/stats.json");
        assert_eq!(response.status, 200, "Host {host}: {}", response.text());
    }
    assert_eq!(
        get_as(addr, &format!("localhost:{port}"), "/frame.png").status,
        200
    );
    // No CORS header on any answer, a preflight's included.
    let preflight = exchange(
        addr,
        b"OPTIONS /stats.json HTTP/1.0\r\nHost: localhost\r\nOrigin: http://evil.example\r\n\
          Access-Control-Request-Method: GET\r\n\r\n",
    );
    let cross = exchange(
        addr,
        b"GET /stats.json HTTP/1.0\r\nHost: localhost\r\nOrigin: http://evil.example\r\n\r\n",
    );
    for response in [
        &preflight,
        &cross,
        &get(addr, "/"),
        &get(addr, "/metrics"),
        &get(addr, "/frame.png"),
    ] {
        assert!(
            !response
                .head
                .to_ascii_lowercase()
                .contains("access-control-"),
            "{}",
            response.head
        );
    }
    drop(server);

    // --http-allow-host adds names (any port, any case); others stay refused.
    let (server, addr) = http_server(&[
        "--http-allow-host",
        "Frames.Example",
        "--http-allow-host",
        "10.1.2.3",
    ]);
    let port = addr.port();
    for host in [
        format!("frames.example:{port}"),
        "FRAMES.example".into(),
        "10.1.2.3".into(),
        format!("127.0.0.1:{port}"),
    ] {
        assert_eq!(get_as(addr, &host, "/stats.json").status, 200, "{host}");
    }
    for host in ["evil.example", "frames.example.evil", "10.1.2.4"] {
        assert_eq!(get_as(addr, host, "/stats.json").status, 421, "{host}");
    }
    drop(server);
    assert_clean_failure(
        &run(&["--port", "0", "--http-allow-host", "frames.example"]),
        "--http-allow-host applies to the HTTP output only",
    );
    assert_clean_failure(
        &run(&["--http", "0", "--http-allow-host", "frames.example:80"]),
        "without a port",
    );
}

#[test]
fn stats_frame_index_is_the_streams_with_only_a_tcp_client() {
    let (server, addr) = pattern_server(&["--port", "0"]);
    assert!(stats(addr)["frame_index"].is_null(), "nothing rendered yet");
    let mut client = server.connect();
    read_frames(&mut client, 3);
    let index = |stats: serde_json::Value| {
        stats["frame_index"]
            .as_u64()
            .unwrap_or_else(|| panic!("no frame index while a TCP client streams: {stats}"))
    };
    let first = index(stats(addr));
    read_frames(&mut client, 10);
    let second = index(stats(addr));
    assert!(second > first, "frame_index {first} then {second}");
}

#[test]
fn a_viewer_that_keeps_up_has_no_dropped_frames() {
    let (server, addr) = pattern_server(&["--preview-fps", "5"]);
    // The page's number is stats.json's dropped_frames.
    let page = get(addr, "/");
    assert!(
        page.text().contains("stats.dropped_frames"),
        "{}",
        page.text()
    );
    let mut viewer = TcpStream::connect(addr).unwrap();
    viewer.set_read_timeout(Some(TIMEOUT)).unwrap();
    viewer
        .write_all(b"GET /stream.mjpg HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    // Read as a browser does, at once, until 12 parts have come.
    let boundary = b"--glstreamframe";
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while bytes
        .windows(boundary.len())
        .filter(|w| w == boundary)
        .count()
        < 12
    {
        let n = viewer.read(&mut chunk).unwrap();
        assert!(n > 0, "the stream ended");
        bytes.extend_from_slice(&chunk[..n]);
    }
    let stats = stats(addr);
    let http = stats["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["output"] == "http")
        .unwrap_or_else(|| panic!("no http output in {stats}"))
        .clone();
    // The renderer ran far faster than 5 fps: the viewer skipped frames on purpose; it missed
    // none it was due.
    assert!(http["skipped"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["dropped_frames"], 0, "{stats}");
    assert_eq!(http["missed"], 0, "{stats}");
    drop(viewer);
    drop(server);
}
