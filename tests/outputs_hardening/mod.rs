//! Outputs wait on events, not on timers: an MJPEG viewer whose connection is stuck sleeps
//! until the connection takes its part, instead of looking again every 10 ms.

use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use super::http::{get, pattern_server};
use super::util::{TIMEOUT, stalled_client};

/// The voluntary context switches (wake-ups after a wait) of the server's thread whose name
/// starts with `prefix`, if there is one.
fn wakeups(pid: u32, prefix: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        if !comm.starts_with(prefix) {
            return None;
        }
        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
        status.lines().find_map(|line| {
            line.strip_prefix("voluntary_ctxt_switches:")
                .and_then(|n| n.trim().parse().ok())
        })
    })
}

/// Parts handed to the HTTP output's viewers so far.
fn parts_handed(addr: SocketAddr) -> u64 {
    let response = get(addr, "/stats.json");
    let stats: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    stats["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["output"] == "http")
        .and_then(|o| o["frames"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_viewer_whose_connection_is_stuck_waits_without_waking() {
    // A fast preview, a renderer as fast as it goes, and a viewer that reads nothing: its
    // connection soon holds a part it cannot write. The send timeout is long, so the viewer is
    // not dropped while it is watched.
    let (server, addr) = pattern_server(&["--preview-fps", "100", "--send-timeout", "300"]);
    let mut viewer = stalled_client(addr);
    viewer
        .write_all(b"GET /stream.mjpg HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    // Stuck: no part handed over for a second (at 100 per second, once the buffers are full).
    let deadline = Instant::now() + TIMEOUT;
    let mut handed = parts_handed(addr);
    loop {
        assert!(Instant::now() < deadline, "the viewer never got stuck");
        thread::sleep(Duration::from_secs(1));
        let now = parts_handed(addr);
        if now == handed && now > 0 {
            break;
        }
        handed = now;
    }
    // Its thread now waits for the connection: over two seconds it wakes (nearly) never. Looking
    // again every 10 ms was some 200 wake-ups.
    let pid = server.pid();
    let before = wakeups(pid, "http viewer").expect("no viewer thread");
    thread::sleep(Duration::from_secs(2));
    let after = wakeups(pid, "http viewer").expect("the viewer thread is gone");
    eprintln!("stuck viewer: {} wake-ups in 2 s", after - before);
    assert!(
        after - before < 20,
        "the stuck viewer's thread woke {} times in 2 s",
        after - before
    );
    assert_eq!(parts_handed(addr), handed, "the viewer was not stuck");
    drop(viewer);
    drop(server);
}

#[test]
fn a_paced_viewer_wakes_for_its_frames_not_for_every_frame_rendered() {
    // The renderer runs as fast as it goes (hundreds of frames a second or more); the viewer
    // gets 5 a second and reads them at once.
    let (server, addr) = pattern_server(&["--preview-fps", "5"]);
    let mut viewer = std::net::TcpStream::connect(addr).unwrap();
    viewer.set_read_timeout(Some(TIMEOUT)).unwrap();
    viewer
        .write_all(b"GET /stream.mjpg HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let reader = thread::spawn(move || {
        let mut chunk = [0u8; 64 * 1024];
        while std::io::Read::read(&mut viewer, &mut chunk).is_ok_and(|n| n > 0) {}
    });
    let deadline = Instant::now() + TIMEOUT;
    while parts_handed(addr) < 2 {
        assert!(Instant::now() < deadline, "the viewer got no parts");
        thread::sleep(Duration::from_millis(100));
    }
    let pid = server.pid();
    let before = wakeups(pid, "http viewer").expect("no viewer thread");
    let parts_before = parts_handed(addr);
    thread::sleep(Duration::from_secs(2));
    let after = wakeups(pid, "http viewer").expect("the viewer thread is gone");
    let parts = parts_handed(addr) - parts_before;
    // A few wake-ups a part (its frame, its pace); waiting for its pace on the hub's condition
    // variable woke it for every frame published.
    eprintln!(
        "paced viewer: {} wake-ups in 2 s, {parts} parts",
        after - before
    );
    assert!(
        after - before < 100,
        "the viewer's thread woke {} times in 2 s for {parts} parts",
        after - before
    );
    drop(server);
    reader.join().unwrap();
}
