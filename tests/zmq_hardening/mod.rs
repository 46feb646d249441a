//! What a ZeroMQ peer may make glstream do, and what it may not: hostile peers speak ZMTP by
//! hand over real TCP sockets (a subscription of 512 KiB, a frame that announces more than
//! 1 GiB) or send malformed messages through a real libzmq socket; `ipc://` paths are owned the
//! way `--unix` paths are; ports and high-water marks out of range are one error line.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use super::util::TIMEOUT;
use super::zmq::{ZH, ZW, collector, endpoint, producer};
use super::*;

/// A raw TCP peer that has done the ZMTP 3.0 handshake (NULL security) as `socket_type`: from
/// here on, what it writes is ZeroMQ frames, checked by nobody. It waits for each of the other
/// side's steps, as libzmq does: libzmq fails a handshake whose steps arrive all at once now and
/// then ("unexpected command").
fn zmtp_peer(endpoint: &str, socket_type: &str) -> TcpStream {
    let addr = endpoint.strip_prefix("tcp://").expect("a tcp:// endpoint");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    // Signature (0xFF, 8 bytes of padding, 0x7F), version 3.0, mechanism, as-server, filler.
    let mut greeting = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    greeting.extend_from_slice(b"NULL");
    greeting.resize(64, 0);
    stream.write_all(&greeting).unwrap();
    let mut theirs = [0u8; 64];
    stream.read_exact(&mut theirs).unwrap();
    assert_eq!((theirs[0], theirs[10]), (0xFF, 3), "not a ZMTP 3 greeting");
    let mut ready = vec![5];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    ready.extend_from_slice(socket_type.as_bytes());
    // A short command frame: flags 0x04, one byte of size.
    let mut command = vec![0x04, ready.len() as u8];
    command.extend_from_slice(&ready);
    stream.write_all(&command).unwrap();
    let mut flags_and_size = [0u8; 2];
    stream.read_exact(&mut flags_and_size).unwrap();
    assert_eq!(flags_and_size[0], 0x04, "expected a short command (READY)");
    let mut theirs = vec![0u8; flags_and_size[1] as usize];
    stream.read_exact(&mut theirs).unwrap();
    assert!(theirs.starts_with(b"\x05READY"), "expected READY");
    stream
}

/// A long message frame (flags 0x02, no more parts) announcing `size` bytes.
fn long_frame_header(size: u64) -> Vec<u8> {
    let mut header = vec![0x02];
    header.extend_from_slice(&size.to_be_bytes());
    header
}

/// Whether the other side closes `stream`: reads (and discards) until end of stream or a reset;
/// false if it is still open after the read timeout.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// The resident set of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"));
    kib * 1024
}

#[test]
fn subscriptions_with_huge_topics_are_refused_and_cost_the_producer_nothing() {
    let mut producer = producer(
        &[
            "--zmq-bind",
            "tcp://127.0.0.1:*",
            "--zmq-pattern",
            "pub",
            "--fps",
            "30",
        ],
        "zmq pub listening on ",
    );
    let endpoint = endpoint(&producer, "zmq pub listening on ");
    let before = rss_bytes(producer.pid());
    // 20 topics of 512 KiB took the producer from 93 MB to 431 MB before subscriptions were
    // capped: libzmq kept every one of them in its topic tree.
    for topic in 0..20u8 {
        let mut peer = zmtp_peer(&endpoint, "SUB");
        let mut subscription = long_frame_header(1 + (512 << 10));
        subscription.push(1);
        subscription.resize(subscription.len() + (512 << 10), topic);
        // The producer may hang up before it has all of it.
        let _ = peer.write_all(&subscription);
        assert!(
            closed_by_peer(&mut peer),
            "the producer kept a subscriber of a 512 KiB topic"
        );
    }
    let grown = rss_bytes(producer.pid()).saturating_sub(before);
    assert!(grown < 32 << 20, "the producer grew by {grown} bytes");
    assert!(producer.is_running());
    // An ordinary subscriber is served as before.
    an_ordinary_subscriber_is_served_then_stop(&mut producer, &endpoint);
}

#[test]
fn a_message_over_1_gib_is_refused_before_the_collector_allocates_it() {
    let (mut collector, endpoint) = collector(&["--frames", "5", "--verify-pattern"]);
    let mut peer = zmtp_peer(&endpoint, "PUSH");
    // One byte over the limit `recv` keeps for TCP too; then the start of the "payload".
    let mut message = long_frame_header((1 << 30) + 1);
    message.resize(message.len() + 4096, 7);
    let _ = peer.write_all(&message);
    assert!(
        closed_by_peer(&mut peer),
        "the collector waited for a 1 GiB + 1 byte message"
    );
    assert!(
        rss_bytes(collector.pid()) < 256 << 20,
        "{}",
        collector.stderr()
    );
    // The collector goes on with the producers that keep to the contract.
    let mut producer = producer(
        &["--zmq-connect", &endpoint, "--frames", "5"],
        "zmq push connecting to ",
    );
    assert!(collector.wait().success(), "{}", collector.stderr());
    let report = collector.stdout();
    assert!(report.contains("5 distinct frames"), "{report}");
    assert!(producer.wait().success(), "{}", producer.stderr());
}

/// A glstream v1 header (the table in README's "The glstream header") for an RGBA8 frame.
fn glstream_header(width: u32, height: u32, frame_index: u64) -> Vec<u8> {
    let mut header = b"GLST".to_vec();
    header.extend_from_slice(&1u16.to_le_bytes());
    header.extend_from_slice(&56u16.to_le_bytes());
    for field in [width, height, 1, 0, width * 4, 0] {
        header.extend_from_slice(&field.to_le_bytes());
    }
    let payload_len = u64::from(width) * u64::from(height) * 4;
    for field in [frame_index, 0, payload_len] {
        header.extend_from_slice(&field.to_le_bytes());
    }
    assert_eq!(header.len(), 56);
    header
}

#[test]
fn malformed_messages_are_dropped_and_counted_and_the_collection_goes_on() {
    let (w, h) = (ZW.parse::<u32>().unwrap(), ZH.parse::<u32>().unwrap());
    let (mut collector, endpoint) = collector(&[
        "--frames",
        "30",
        "--verify-pattern",
        "--width",
        ZW,
        "--height",
        ZH,
    ]);
    let context = ::zmq::Context::new();
    let rogue = context.socket(::zmq::PUSH).unwrap();
    rogue.set_linger(0).unwrap();
    rogue.connect(&endpoint).unwrap();
    let good_header = glstream_header(w, h, 0);
    let payload = vec![0u8; (w * h * 4) as usize];
    let mut bad_magic = good_header.clone();
    bad_magic[..4].copy_from_slice(b"XXXX");
    let messages: Vec<Vec<Vec<u8>>> = vec![
        // One part.
        vec![b"hello".to_vec()],
        // Three parts.
        vec![good_header.clone(), payload.clone(), b"more".to_vec()],
        // A header part one byte short.
        vec![good_header[..55].to_vec(), payload.clone()],
        // Not a glstream header.
        vec![bad_magic, payload.clone()],
        // A payload one byte shorter than its header says.
        vec![good_header.clone(), payload[1..].to_vec()],
        // A whole frame of another size than the collection's.
        vec![glstream_header(2, 1, 0), vec![0u8; 8]],
    ];
    for message in &messages {
        rogue.send_multipart(message, 0).unwrap();
    }
    // Each is logged as it is dropped; the collector is still collecting.
    assert!(
        collector.wait_for_log("dropped message 6 from a peer"),
        "{}",
        collector.stderr()
    );
    assert!(collector.is_running(), "{}", collector.stderr());
    let log = collector.stderr();
    for why in [
        "a message of 1 parts",
        "a message of 3 parts",
        "header part of 55 bytes",
        "bad header",
        "payload part of",
        "width 2, expected 160",
    ] {
        assert!(log.contains(why), "{why:?} not in:\n{log}");
    }
    let mut producer = producer(
        &["--zmq-connect", &endpoint, "--frames", "30"],
        "zmq push connecting to ",
    );
    assert!(collector.wait().success(), "{}", collector.stderr());
    let report = collector.stdout();
    assert!(
        report.contains("30 distinct frames, indices 0..=29, 0 missing, 0 duplicates"),
        "{report}"
    );
    assert!(
        report.contains("dropped 6 messages that were not frames of this collection"),
        "{report}"
    );
    assert!(producer.wait().success(), "{}", producer.stderr());
}

fn ipc(path: &Path) -> String {
    format!("ipc://{}", path_str(path))
}

#[test]
fn an_ipc_path_that_is_not_a_socket_is_refused_and_left_intact() {
    let dir = scratch("zmq-ipc-not-a-socket");
    let file = dir.join("precious.txt");
    std::fs::write(&file, b"not a socket").unwrap();
    let endpoint = ipc(&file);
    for args in [
        &["--zmq-bind", &endpoint][..],
        &["--zmq-bind", &endpoint, "--zmq-pattern", "pub"],
        &["recv", "--zmq-bind", &endpoint],
    ] {
        let output = run(args);
        assert_clean_failure(&output, &format!("cannot bind {endpoint}"));
        assert_clean_failure(&output, "exists and is not a socket");
        assert!(!String::from_utf8_lossy(&output.stderr).contains("GL_RENDERER"));
        assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");
    }
}

#[test]
fn ipc_socket_files_are_removed_after_a_clean_end_a_signal_and_recv_exiting() {
    let dir = scratch("zmq-ipc-cleanup");
    // A push producer whose --frames run ends cleanly once its collector has them.
    let path = dir.join("push.sock");
    let endpoint = ipc(&path);
    let mut push = producer(
        &["--zmq-bind", &endpoint, "--frames", "5"],
        "zmq push listening on ",
    );
    assert!(path.exists());
    run_ok(&["recv", "--zmq-connect", &endpoint, "--frames", "5"]);
    assert!(push.wait().success(), "{}", push.stderr());
    assert!(!path.exists(), "a clean end left {}", path.display());
    // A pub producer ended by SIGINT.
    let path = dir.join("pub.sock");
    let endpoint = ipc(&path);
    let mut publisher = producer(
        &["--zmq-bind", &endpoint, "--zmq-pattern", "pub"],
        "zmq pub listening on ",
    );
    assert!(path.exists());
    publisher.signal("INT");
    assert!(publisher.wait().success(), "{}", publisher.stderr());
    assert!(!path.exists(), "SIGINT left {}", path.display());
    // A collector that exits after --frames, and one ended by SIGINT.
    let path = dir.join("collector.sock");
    let endpoint = ipc(&path);
    let mut collector = Server::start_with(
        &["recv", "--zmq-bind", &endpoint, "--frames", "3"],
        "listening on ",
    );
    assert!(path.exists());
    let mut sender = producer(
        &["--zmq-connect", &endpoint, "--frames", "3"],
        "zmq push connecting to ",
    );
    assert!(collector.wait().success(), "{}", collector.stderr());
    assert!(!path.exists(), "recv left {}", path.display());
    assert!(sender.wait().success(), "{}", sender.stderr());
    let mut collector = Server::start_with(&["recv", "--zmq-bind", &endpoint], "listening on ");
    assert!(path.exists());
    collector.signal("INT");
    assert!(collector.wait().success(), "{}", collector.stderr());
    assert!(!path.exists(), "recv after SIGINT left {}", path.display());
}

#[test]
fn ports_out_of_range_are_one_error_line_not_a_wrapped_port() {
    // libzmq keeps 16 bits of the port: 99999 would listen on 34463, 4294967297 on 1.
    for (flag, endpoint) in [
        ("--zmq-bind", "tcp://127.0.0.1:99999"),
        ("--zmq-bind", "tcp://127.0.0.1:4294967297"),
        ("--zmq-connect", "tcp://127.0.0.1:65536"),
        ("--zmq-connect", "tcp://127.0.0.1:0"),
    ] {
        let needle = format!("{flag} {endpoint}: the port must be");
        let output = run(&[flag, endpoint]);
        assert_clean_failure(&output, &needle);
        assert!(!String::from_utf8_lossy(&output.stderr).contains("GL_RENDERER"));
        assert_clean_failure(&run(&["recv", flag, endpoint]), &needle);
    }
}

#[test]
fn recv_refuses_a_zmq_hwm_outside_1_to_1024() {
    // 0 is no limit at all to libzmq; 4294967295 would wrap to -1 (no limit either).
    for hwm in ["0", "1025", "4294967295"] {
        let output = run(&["recv", "--zmq-bind", "tcp://127.0.0.1:*", "--zmq-hwm", hwm]);
        assert_clean_failure(
            &output,
            &format!("--zmq-hwm {hwm}: must be between 1 and 1024 frames"),
        );
    }
}

#[test]
fn a_subscriber_naming_too_many_topics_is_dropped_and_the_stream_goes_on() {
    let mut producer = producer(
        &[
            "--zmq-bind",
            "tcp://127.0.0.1:*",
            "--zmq-pattern",
            "pub",
            "--fps",
            "30",
        ],
        "zmq pub listening on ",
    );
    let endpoint = endpoint(&producer, "zmq pub listening on ");
    // Small topics, each a new one: libzmq would keep them all for as long as the peer stays.
    let mut peer = zmtp_peer(&endpoint, "SUB");
    let mut subscriptions = Vec::new();
    for topic in 0..1000u32 {
        let mut message = vec![1];
        message.extend_from_slice(format!("{topic:0200}").as_bytes());
        subscriptions.extend_from_slice(&[0x00, message.len() as u8]);
        subscriptions.extend_from_slice(&message);
    }
    let _ = peer.write_all(&subscriptions);
    assert!(
        closed_by_peer(&mut peer),
        "the producer kept a subscriber of 1000 topics"
    );
    assert!(
        producer.wait_for_log("dropping every subscriber"),
        "{}",
        producer.stderr()
    );
    // The endpoint is bound again: an ordinary subscriber is served.
    an_ordinary_subscriber_is_served_then_stop(&mut producer, &endpoint);
}

/// After a hostile peer: an ordinary subscriber still gets ten pattern frames, and the producer
/// then stops cleanly on SIGTERM.
fn an_ordinary_subscriber_is_served_then_stop(producer: &mut Server, endpoint: &str) {
    let output = run_ok(&[
        "recv",
        "--zmq-connect",
        endpoint,
        "--zmq-pattern",
        "sub",
        "--frames",
        "10",
        "--verify-pattern",
        "--max-drops",
        "1000",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("10 distinct frames"), "{stdout}");
    producer.signal("TERM");
    assert!(producer.wait().success(), "{}", producer.stderr());
}
