//! The ZeroMQ outputs (`--zmq-bind`, `--zmq-connect`) and the message-parts contract both ends of
//! a ZeroMQ stream share (`glstream recv --zmq-*` opens its socket here too).
//!
//! **Message parts.** Every frame is one two-part message: part 1 is exactly the 56-byte
//! glstream v1 header ([`protocol::GLSTREAM_HEADER_LEN`]: frame index, timestamp, size, format,
//! stride), part 2 the payload (`payload length` bytes, nothing else). ZeroMQ delivers the parts
//! of a message together or not at all, so a consumer always holds a whole frame and knows which
//! one. `output::Framing` (with the glstream header) writes part 1, [`decode_parts`] checks a
//! received pair.
//!
//! **One socket per output**, with every endpoint bound or connected on it, created and bound by
//! [`bind`] before GL starts, so that a bad endpoint fails at once. Options are set before any
//! endpoint: libzmq applies them to the pipes it creates afterwards.
//!
//! - `push` (PUSH): one hub client, [`Policy::Lossless`], registered before the first frame.
//!   libzmq hands each message to one peer whose pipe is below the high-water mark (fair
//!   queueing). When every peer is full, or none is there, the sink waits, and with it the
//!   renderer: back-pressure, never a drop. So the push sink never gives up at `--send-timeout`
//!   (a full farm is not a failed consumer); it waits in [`SLICE`]s, and leaves only when the
//!   stream is shut down or aborted.
//! - `pub` (XPUB): a hub client, [`Policy::Latest`], exists only while someone is subscribed, so a
//!   producer nobody subscribes to renders nothing. The XPUB socket reports subscriptions as
//!   messages; without `XPUB_VERBOSE(R)` libzmq sends one subscribe when a topic gets its first
//!   subscriber and one unsubscribe when it loses its last (a peer that disconnects included),
//!   so the running count is the number of topics with a subscriber: above zero exactly when
//!   anyone listens. (`XPUB_VERBOSER` would give a per-subscriber count, but zmq 0.10 does not
//!   wrap it and a raw `setsockopt` would need `unsafe`; `XPUB_VERBOSE` alone miscounts.) A
//!   subscriber at its high-water mark loses frames inside libzmq; the renderer never waits.
//!
//! **What a peer may send.** Every socket caps the size of each message part a peer sends
//! (`ZMQ_MAXMSGSIZE`; libzmq checks the size a frame announces before allocating it and drops
//! the connection of a peer that announces more). A producer's peers send nothing but
//! subscriptions, so a producer takes parts of at most [`MAX_PEER_PART_BYTES`]: libzmq keeps
//! every topic a subscriber names until it leaves, and a 512 KiB topic would cost the producer
//! megabytes. For the same reason a pub output whose subscribers hold more than [`MAX_TOPICS`]
//! topics drops them all (libzmq cannot drop one peer); the well-behaved reconnect. A consumer
//! takes parts of at most [`protocol::MAX_FRAME_BYTES`], as `recv` does over TCP (libzmq holds
//! a message's parts until the last, so a peer can still make it hold a few such parts). A
//! message that breaks the contract is the sender's problem: [`Receiver::recv`] reports it as
//! an error for which [`ZmqError::is_from_peer`] holds, and the caller drops it.
//!
//! **`ipc://` paths** follow `--unix`'s rule: a path that exists and is not a socket, or a socket
//! someone listens on, is refused (libzmq would unlink either); a stale socket is replaced; the
//! socket file a bind created is removed when its socket closes, if it is still the same file.
//!
//! **Memory.** The payload is copied once per frame into a libzmq message (one `malloc` and
//! `memcpy` inside libzmq; measured about 40 µs at 800×600 on a 2-core machine, logged at the
//! end of each run). Zero-copy is not used: a message that borrowed the mapped frame would be
//! released by a free callback on libzmq's I/O thread, whenever libzmq is done with it — after a
//! slow or vanished peer, possibly after the stream's thread scope and the GL context the lease
//! borrows are gone. With the copy, the lease goes back to the ring as soon as the message is
//! made, and libzmq owns what it queues.
//!
//! **Shutdown.** Sends never block inside libzmq: the sink polls for room in slices and checks
//! the hub. After a shutdown (a signal) a sink that has not started a frame leaves at once, and
//! its socket lingers at most [`STOP_LINGER`]; after a complete `--frames` run it waits (up to
//! the send timeout, or until an abort) for libzmq to hand the queued frames over.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::{self, Scope};
use std::time::{Duration, Instant};

use std::sync::Arc;

use thiserror::Error;

use super::encode::{Encoder, Target};
use super::hub::{Frame, Hub, Policy};
use super::output::{
    BindError, Deadline, Feed, FrameShape, Framing, Held, Output, OutputConfig, OutputError, SLICE,
    SendError, Sink, serve_sink,
};
use super::protocol::{self, Decoded, GLSTREAM_HEADER_LEN, HeaderMode, ProtocolError};
use super::socket::{OwnedPath, SocketError};
use crate::codec::Compress;
use crate::format::Format;

/// How a ZeroMQ producer spreads frames over its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// PUSH: each frame to one peer (fair queueing); the renderer waits when all are full.
    Push,
    /// PUB (an XPUB socket): every frame to every subscriber that keeps up; none is waited for.
    Pub,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::Push => "push",
            Pattern::Pub => "pub",
        }
    }
}

/// How a ZeroMQ consumer (`glstream recv`) takes frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvPattern {
    /// PULL: a share of the frames of every producer connected (a collector).
    Pull,
    /// SUB: every frame a publisher sends, as far as this subscriber keeps up.
    Sub,
}

/// A validated ZeroMQ output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZmqConfig {
    /// Socket pattern.
    pub pattern: Pattern,
    /// Endpoints to bind (`tcp://HOST:PORT`, `tcp://HOST:*`, `ipc://PATH`).
    pub bind: Vec<String>,
    /// Endpoints to connect to; libzmq reconnects on its own.
    pub connect: Vec<String>,
    /// High-water mark, in frames (messages), per peer.
    pub hwm: u32,
    /// Compress every frame (`--compress`): part 1 is then a glstream v2 header.
    pub compress: Option<Compress>,
}

/// How long a socket may still deliver queued frames after a shutdown (a signal).
pub const STOP_LINGER: Duration = Duration::from_millis(100);

/// The largest message part a producer takes from a peer. Peers send only subscriptions (a
/// topic and one byte; a ZMTP 3.1 peer sends a command of ten bytes and the topic): a topic
/// longer than the 56-byte header matches no frame, so 256 bytes leave room for any topic that
/// means something, and for the handshake's metadata.
pub const MAX_PEER_PART_BYTES: i64 = 256;

/// Why a ZeroMQ socket could not be set up, or a message not read.
#[derive(Debug, Error)]
pub enum ZmqError {
    /// An endpoint glstream does not serve (only `tcp://` and `ipc://` reach another process),
    /// or a TCP port out of range.
    #[error("{flag} {endpoint}: {why}")]
    BadEndpoint {
        /// The option that gave it.
        flag: &'static str,
        /// The endpoint.
        endpoint: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// libzmq could not create the socket or set an option on it.
    #[error("cannot set up the ZeroMQ {what} socket ({step})")]
    Socket {
        /// The socket type.
        what: &'static str,
        /// What failed.
        step: &'static str,
        /// libzmq's error.
        source: zmq::Error,
    },
    /// An endpoint could not be bound (address in use, not local, bad address).
    #[error("cannot bind {endpoint}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// libzmq's error.
        source: zmq::Error,
    },
    /// An `ipc://` path that is not this process's to take: a file that is not a socket, or a
    /// socket another process listens on. It is left as it was.
    #[error("cannot bind {endpoint}")]
    IpcPath {
        /// The endpoint.
        endpoint: String,
        /// What is at the path.
        source: SocketError,
    },
    /// An endpoint could not be connected to (a malformed address; an absent peer is not an
    /// error, libzmq retries).
    #[error("cannot connect to {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// libzmq's error.
        source: zmq::Error,
    },
    /// Receiving failed.
    #[error("cannot receive a message")]
    Recv(#[source] zmq::Error),
    /// A message that is not [header, payload].
    #[error("a message of {0} parts (expected 2: header, payload)")]
    Parts(usize),
    /// Part 1 is not a glstream v1 header.
    #[error("bad header part")]
    Header(#[source] ProtocolError),
    /// Part 1 is longer or shorter than the header.
    #[error(
        "header part of {0} bytes (expected {GLSTREAM_HEADER_LEN}, or what a version 2 header says)"
    )]
    HeaderLength(usize),
    /// Part 2 is not as long as the header says.
    #[error("payload part of {got} bytes, the header says {expected}")]
    PayloadLength {
        /// Bytes in part 2.
        got: usize,
        /// The header's payload length.
        expected: u64,
    },
}

impl ZmqError {
    /// Whether the error is a message that breaks the contract: the peer that sent it is at
    /// fault, not this socket, so the message is dropped and the stream goes on.
    pub fn is_from_peer(&self) -> bool {
        matches!(
            self,
            ZmqError::Parts(_)
                | ZmqError::Header(_)
                | ZmqError::HeaderLength(_)
                | ZmqError::PayloadLength { .. }
        )
    }
}

const EXPECTED_ENDPOINT: &str = "expected tcp://HOST:PORT or ipc://PATH";
const BIND_PORTS: &str = "the port must be 0 to 65535, or * for any free port";
const CONNECT_PORTS: &str = "the port must be 1 to 65535";

/// Checks that `endpoint` is one glstream serves: `tcp://HOST:PORT` or `ipc://PATH`. `flag` says
/// how it is used: `--zmq-bind` binds (a port from 0 to 65535, or `*`: any free port), any other
/// flag connects (a port from 1 to 65535; libzmq's `SOURCE;HOST:PORT` form names the address to
/// connect from). The port is checked here because libzmq reads it with `atoi` and keeps 16
/// bits: `:99999` would listen on 34463.
pub fn check_endpoint(flag: &'static str, endpoint: &str) -> Result<(), ZmqError> {
    let bad = |why| ZmqError::BadEndpoint {
        flag,
        endpoint: endpoint.to_string(),
        why,
    };
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        return if path.is_empty() {
            Err(bad(EXPECTED_ENDPOINT))
        } else {
            Ok(())
        };
    }
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return Err(bad(EXPECTED_ENDPOINT));
    };
    let binding = flag == "--zmq-bind" || flag == "--control";
    let address = match rest.rsplit_once(';') {
        Some((source, address)) if !binding => {
            check_host_port(source, true).map_err(bad)?;
            address
        }
        _ => rest,
    };
    check_host_port(address, binding).map_err(bad)
}

/// Checks `HOST:PORT`: a host, and a port a socket can bind (`bindable`) or connect to.
fn check_host_port(address: &str, bindable: bool) -> Result<(), &'static str> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(EXPECTED_ENDPOINT);
    };
    if host.is_empty() {
        return Err(EXPECTED_ENDPOINT);
    }
    if bindable && port == "*" {
        return Ok(());
    }
    let (lowest, why) = if bindable {
        (0, BIND_PORTS)
    } else {
        (1, CONNECT_PORTS)
    };
    // Digits only: `atoi` would take "+80", " 80" and "80x" as 80.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(why);
    }
    match port.parse::<u32>() {
        Ok(port) if (lowest..=65535).contains(&port) => Ok(()),
        _ => Err(why),
    }
}

/// The path of an `ipc://` endpoint this process may bind and then owns, or `None` for one it
/// neither checks nor owns: `ipc://*` (libzmq makes a fresh path in a directory of its own and
/// removes both) and `ipc://@NAME` (Linux's abstract namespace has no file).
fn ipc_path(endpoint: &str) -> Option<&Path> {
    let path = endpoint.strip_prefix("ipc://")?;
    (!path.starts_with(['*', '@'])).then(|| Path::new(path))
}

/// Refuses an `ipc://` path that is not this process's to take: libzmq unlinks whatever is there
/// before it binds. A stale socket file (nobody accepts on it) may go; the check and libzmq's
/// bind are not one step, so a file put there in between is not protected.
fn check_ipc_path(endpoint: &str, path: &Path) -> Result<(), ZmqError> {
    let refuse = |source| ZmqError::IpcPath {
        endpoint: endpoint.to_string(),
        source,
    };
    let io_error = |source| {
        refuse(SocketError::Bind {
            addr: path.display().to_string(),
            source,
        })
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(refuse(SocketError::NotASocket(path.to_path_buf())));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(refuse(SocketError::UnixInUse(path.to_path_buf()))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("replacing stale socket {}", path.display());
            Ok(())
        }
        Err(e) => Err(io_error(e)),
    }
}

/// Connects `socket` to every endpoint (libzmq retries an absent peer on its own).
fn connect_all(socket: &zmq::Socket, endpoints: &[String]) -> Result<(), ZmqError> {
    for endpoint in endpoints {
        socket
            .connect(endpoint)
            .map_err(|source| ZmqError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
    }
    Ok(())
}

/// A socket with its options set and every endpoint bound or connected.
pub(crate) struct Opened {
    pub(crate) socket: zmq::Socket,
    /// The endpoints as bound (a `*` port resolved).
    pub(crate) bound: Vec<String>,
    /// The `ipc://` socket files the binds created, removed when dropped.
    pub(crate) owned: Vec<OwnedPath>,
}

/// Creates a socket, sets its options (`max_part_bytes` and what `configure` sets) and binds and
/// connects every endpoint.
pub(crate) fn open(
    context: &zmq::Context,
    kind: zmq::SocketType,
    what: &'static str,
    bind: &[String],
    connect: &[String],
    max_part_bytes: i64,
    configure: impl FnOnce(&zmq::Socket) -> zmq::Result<()>,
) -> Result<Opened, ZmqError> {
    let socket_error = |step| move |source| ZmqError::Socket { what, step, source };
    let socket = context.socket(kind).map_err(socket_error("create"))?;
    // libzmq's default linger is forever: closing with frames queued for an absent peer would
    // hang the exit. The close sets the linger it wants.
    socket.set_linger(0).map_err(socket_error("linger"))?;
    socket
        .set_maxmsgsize(max_part_bytes)
        .map_err(socket_error("maximum message size"))?;
    configure(&socket).map_err(socket_error("options"))?;
    let mut bound = Vec::with_capacity(bind.len());
    let mut owned = Vec::new();
    for endpoint in bind {
        let (resolved, file) = bind_endpoint(&socket, endpoint)?;
        bound.push(resolved);
        owned.extend(file);
    }
    connect_all(&socket, connect)?;
    Ok(Opened {
        socket,
        bound,
        owned,
    })
}

/// Binds `endpoint`, under `--unix`'s rule for `ipc://` paths; returns the endpoint as bound
/// (`tcp://127.0.0.1:*` becomes the port the kernel picked) and the socket file it created.
fn bind_endpoint(
    socket: &zmq::Socket,
    endpoint: &str,
) -> Result<(String, Option<OwnedPath>), ZmqError> {
    let path = ipc_path(endpoint);
    if let Some(path) = path {
        check_ipc_path(endpoint, path)?;
    }
    socket.bind(endpoint).map_err(|source| ZmqError::Bind {
        endpoint: endpoint.to_string(),
        source,
    })?;
    let owned = match path {
        Some(path) => Some(OwnedPath::record(path).map_err(|source| ZmqError::IpcPath {
            endpoint: endpoint.to_string(),
            source: SocketError::Bind {
                addr: path.display().to_string(),
                source,
            },
        })?),
        None => None,
    };
    let resolved = socket
        .get_last_endpoint()
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| endpoint.to_string());
    Ok((resolved, owned))
}

/// Checks a received [header, payload] pair against the contract and returns what the header
/// says.
pub fn decode_parts(header: &[u8], payload: &[u8]) -> Result<Decoded, ZmqError> {
    // Version 1 is 56 bytes; a version 2 header (compressed frames) says its own length.
    let expected = protocol::glstream_header_len(header).unwrap_or(GLSTREAM_HEADER_LEN);
    if header.len() != expected {
        return Err(ZmqError::HeaderLength(header.len()));
    }
    // A glstream header names its own format; the expected one is not used.
    let decoded =
        protocol::decode(HeaderMode::Glstream, header, Format::Rgba8).map_err(ZmqError::Header)?;
    if payload.len() as u64 != decoded.payload_len {
        return Err(ZmqError::PayloadLength {
            got: payload.len(),
            expected: decoded.payload_len,
        });
    }
    Ok(decoded)
}

/// A ZeroMQ output whose socket is bound (or connecting) but not yet served.
pub struct ZmqOutput {
    pattern: Pattern,
    compress: Option<Compress>,
    // The socket holds a handle on the context too; the context is kept to close them together.
    context: zmq::Context,
    socket: zmq::Socket,
    endpoints: Endpoints,
}

/// Creates the output's socket and binds and connects it, before any GL starts.
pub fn bind(config: &ZmqConfig) -> Result<ZmqOutput, ZmqError> {
    for endpoint in &config.bind {
        check_endpoint("--zmq-bind", endpoint)?;
    }
    for endpoint in &config.connect {
        check_endpoint("--zmq-connect", endpoint)?;
    }
    let context = zmq::Context::new();
    let (kind, what) = match config.pattern {
        Pattern::Push => (zmq::PUSH, "PUSH"),
        Pattern::Pub => (zmq::XPUB, "XPUB"),
    };
    let hwm = i32::try_from(config.hwm).unwrap_or(i32::MAX);
    let Opened {
        socket,
        bound,
        owned,
    } = open(
        &context,
        kind,
        what,
        &config.bind,
        &config.connect,
        MAX_PEER_PART_BYTES,
        |socket| {
            socket.set_sndhwm(hwm)?;
            // Subscriptions a peer has sent but this thread has not read yet: libzmq reads a
            // peer's whole queue into its topic tree at once, so this bounds how far past
            // MAX_TOPICS one peer gets before the count is seen.
            socket.set_rcvhwm(MAX_TOPICS as i32)
        },
    )?;
    Ok(ZmqOutput {
        pattern: config.pattern,
        compress: config.compress,
        context,
        socket,
        endpoints: Endpoints {
            bound,
            connect: config.connect.clone(),
            owned,
        },
    })
}

impl<F: Frame> OutputConfig<F> for ZmqConfig {
    fn carries_frame_index(&self) -> bool {
        // Every message's first part is a glstream header.
        true
    }

    fn compresses(&self) -> bool {
        self.compress.is_some()
    }

    fn bind(&self) -> Result<Box<dyn Output<F>>, BindError> {
        Ok(Box::new(bind(self)?))
    }
}

impl<F: Frame> Output<F> for ZmqOutput {
    fn policy(&self, _chosen: Option<Policy>) -> Policy {
        // The pattern is the policy: push waits for its peers, pub drops at their HWM.
        match self.pattern {
            Pattern::Push => Policy::Lossless,
            Pattern::Pub => Policy::Latest,
        }
    }

    fn announcement(&self) -> Option<String> {
        let Endpoints { bound, connect, .. } = &self.endpoints;
        let mut line = format!("zmq {}", self.pattern.name());
        if !bound.is_empty() {
            line += &format!(" listening on {}", bound.join(" "));
        }
        if !connect.is_empty() {
            if !bound.is_empty() {
                line.push(',');
            }
            line += &format!(" connecting to {}", connect.join(" "));
        }
        Some(line)
    }

    fn start<'scope, 'env>(
        self: Box<Self>,
        scope: &'scope Scope<'scope, 'env>,
        feed: &'env Feed<F>,
        policy: Policy,
    ) -> Result<(), OutputError> {
        let ZmqOutput {
            pattern,
            compress,
            context,
            socket,
            endpoints,
        } = *self;
        let name = format!("zmq-{}", pattern.name());
        // Compressed frames come from the feed's encode stage, made now: a codec that cannot
        // carry the format fails here, before any frame.
        let encoder = match compress {
            Some(compress) => Some(feed.encoder(scope, Target::Strips(compress), policy)?),
            None => None,
        };
        let body: Box<dyn FnOnce() + Send + 'scope> = match pattern {
            Pattern::Push => {
                // Registered before any frame is rendered, so the peers get frame 0 first: a
                // push producer always renders, and waits on its peers.
                let framing = Framing::new(HeaderMode::Glstream, encoder.as_ref(), feed);
                let id = feed.register("zmq", policy);
                Box::new(move || {
                    let sink = PushSink {
                        socket: Some((socket, context, endpoints.owned)),
                        hub: &feed.hub,
                        copies: Copies::default(),
                        framing,
                    };
                    serve_sink(feed, id, sink, "zmq push");
                })
            }
            Pattern::Pub => Box::new(move || {
                serve_pub(feed, policy, socket, context, endpoints, encoder.as_ref())
            }),
        };
        thread::Builder::new()
            .name(name.clone())
            .spawn_scoped(scope, body)
            .map(drop)
            .map_err(|source| OutputError::Thread { what: name, source })
    }
}

/// The time spent copying payloads into messages, for the summary a sink logs when it closes.
#[derive(Debug, Default)]
struct Copies {
    frames: u64,
    total: Duration,
}

impl Copies {
    fn log(&self, name: &str) {
        if self.frames > 0 {
            log::info!(
                "{name}: {} payloads copied into messages, {:.1} µs each on average",
                self.frames,
                self.total.as_secs_f64() * 1e6 / self.frames as f64
            );
        }
    }
}

/// One attempt to queue a frame without waiting. `Ok(false)` when the socket has no room now;
/// nothing of the frame is then queued (libzmq rolls back a header whose payload it refused).
fn try_send(
    socket: &zmq::Socket,
    header: &[u8],
    payload: &[u8],
    copies: &mut Copies,
) -> zmq::Result<bool> {
    // The header goes first, and is the gate: libzmq counts the high-water mark in whole
    // messages, so once part 1 is taken, part 2 is refused only if the peer's pipe died in
    // between. The payload is copied only once the header is in.
    match socket.send(header, zmq::SNDMORE | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(false),
        Err(e) => return Err(e),
    }
    let started = Instant::now();
    let message = zmq::Message::from(payload);
    copies.total += started.elapsed();
    copies.frames += 1;
    match socket.send(message, zmq::DONTWAIT) {
        Ok(()) => Ok(true),
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits up to `wait` for room to send; EINTR counts as no room yet.
fn wait_writable(socket: &zmq::Socket, wait: Duration) -> zmq::Result<()> {
    match socket.poll(zmq::POLLOUT, wait.as_millis().max(1) as i64) {
        Ok(_) | Err(zmq::Error::EINTR) => Ok(()),
        Err(e) => Err(e),
    }
}

fn send_error(e: zmq::Error) -> SendError {
    SendError::Failed(io::Error::other(e))
}

/// Closes a producer socket. After a complete stream (`deliver`) libzmq gets until the deadline to
/// hand the queued frames over; otherwise at most [`STOP_LINGER`]. The termination runs on a
/// thread of its own so that an abort is not stuck behind it: the queued messages are libzmq's
/// own copies, so that thread may outlive the stream (the process exit ends it).
fn close_socket(
    socket: zmq::Socket,
    context: zmq::Context,
    deliver: bool,
    deadline: &Deadline<'_>,
    name: &str,
) {
    let linger = if deliver {
        deadline.at.saturating_duration_since(Instant::now())
    } else {
        STOP_LINGER
    };
    let linger_ms = i32::try_from(linger.as_millis()).unwrap_or(i32::MAX);
    if let Err(e) = socket.set_linger(linger_ms) {
        log::warn!("{name}: cannot set the linger time: {e}");
    }
    let (closed, done) = std::sync::mpsc::channel::<()>();
    let closing = thread::Builder::new()
        .name("zmq-close".into())
        .spawn(move || {
            drop(socket);
            // zmq_ctx_term: returns once the queued messages are out or the linger is over.
            drop(context);
            let _ = closed.send(());
        });
    // If the thread cannot start, the closure was dropped: the socket closed in place.
    if closing.is_err() {
        return;
    }
    // Woken by the closing thread when it is done; in slices only to notice an abort.
    loop {
        let Ok(wait) = deadline.next_wait(0, 0, 0) else {
            log::info!("{name}: not waiting any longer for libzmq to deliver queued frames");
            return;
        };
        match done.recv_timeout(wait) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// The push sink: the socket and its `ipc://` files (until closed), the hub (to see a shutdown),
/// the copy timings.
struct PushSink<'a, F> {
    socket: Option<(zmq::Socket, zmq::Context, Vec<OwnedPath>)>,
    hub: &'a Hub<F>,
    copies: Copies,
    /// Part 1 and the payload of each frame: glstream's header, version 2 when frames are
    /// compressed (`--compress`) or carry request ids (`--control`).
    framing: Framing<'a>,
}

impl<F: Frame> Sink for PushSink<'_, F> {
    fn send<G: Frame>(
        &mut self,
        frame: &G,
        shape: &FrameShape,
        deadline: &Deadline<'_>,
    ) -> Result<u64, SendError> {
        let mut held = Held::default();
        let (header, payload) = self.framing.parts(frame, shape, &mut held)?;
        let total = (header.len() + payload.len()) as u64;
        let Some((socket, _, _)) = &self.socket else {
            return Err(SendError::Aborted { sent: 0, total });
        };
        loop {
            // Peers at their high-water mark are back-pressure, not a failure: no timeout, but
            // a shutdown ends the wait (nothing of this frame is sent yet, so nothing is torn).
            if (deadline.aborted)() || self.hub.is_shut_down() {
                return Err(SendError::Aborted { sent: 0, total });
            }
            if try_send(socket, header, payload, &mut self.copies).map_err(send_error)? {
                return Ok(total);
            }
            wait_writable(socket, SLICE).map_err(send_error)?;
        }
    }

    fn close(&mut self, clean: bool, deadline: &Deadline<'_>) {
        self.copies.log("zmq push");
        if let Some((socket, context, owned)) = self.socket.take() {
            let deliver = clean && !self.hub.is_shut_down();
            close_socket(socket, context, deliver, deadline, "zmq push");
            // Nobody can connect any more once the files are gone; established peers keep
            // what libzmq still delivers.
            drop(owned);
        }
    }
}

/// The pub side: waits for subscribers, serves them as one hub client while there are any, and
/// goes idle (no hub client, so nothing is rendered) when the last one leaves. Subscribers that
/// hold more than [`MAX_TOPICS`] topics are all dropped at once (see [`Topics`]).
fn serve_pub<F: Frame>(
    feed: &Feed<F>,
    policy: Policy,
    socket: zmq::Socket,
    context: zmq::Context,
    mut endpoints: Endpoints,
    encoder: Option<&Arc<Encoder>>,
) {
    let hub = &feed.hub;
    let mut topics = Topics::default();
    let mut copies = Copies::default();
    let mut failed = false;
    while !hub.is_finished() {
        if let Err(e) = read_subscriptions(&socket, &mut topics, Duration::from_millis(100)) {
            log::warn!("zmq pub: cannot read subscriptions: {e}");
            failed = true;
            break;
        }
        if topics.too_many() {
            log::warn!(
                "zmq pub: subscribers hold {} topics (at most {MAX_TOPICS}; glstream has none, \
                 subscribe to \"\"): dropping every subscriber, the well-behaved reconnect",
                topics.live
            );
            topics.added = 0;
            if let Err(e) = endpoints.reopen(&socket) {
                log::warn!("zmq pub: {:#}", anyhow::Error::new(e));
                failed = true;
                break;
            }
            continue;
        }
        if topics.live > 0 && !hub.is_finished() {
            let framing = Framing::new(HeaderMode::Glstream, encoder, feed);
            let id = feed.register("zmq", policy);
            log::info!("zmq pub: a subscriber is here; rendering");
            let sink = PubSink {
                socket: &socket,
                topics: &mut topics,
                copies: &mut copies,
                framing,
            };
            let departure = serve_sink(feed, id, sink, "zmq pub subscribers");
            failed = matches!(departure.failure, Some(SendError::Failed(_)));
            if failed {
                break;
            }
        }
    }
    copies.log("zmq pub");
    let aborted = || hub.is_aborted();
    let started = Instant::now();
    let deadline = Deadline {
        at: started + feed.send_timeout,
        started,
        aborted: &aborted,
        abort_fd: None,
    };
    let deliver = !failed && !hub.is_shut_down();
    close_socket(socket, context, deliver, &deadline, "zmq pub");
    drop(endpoints);
}

/// The most topics the subscribers of a pub output may hold. glstream's frames have no topic
/// (every subscriber subscribes to `""`), but libzmq keeps every distinct topic a peer names,
/// up to [`MAX_PEER_PART_BYTES`] each, for as long as the peer stays: without a cap, a peer
/// naming new topics would grow the producer without bound.
pub const MAX_TOPICS: i64 = 64;

/// How long a pub output waits for libzmq to release an endpoint it unbound before binding it
/// again (libzmq closes the listener on its I/O thread, after `zmq_unbind` returns).
const REBIND_WAIT: Duration = Duration::from_secs(2);

/// What the XPUB socket said about its subscriptions. Without `XPUB_VERBOSE` libzmq reports a
/// topic when it gets its first subscriber and when it loses its last (a peer that disconnects
/// included).
#[derive(Debug, Default)]
struct Topics {
    /// Topics with a subscriber: above zero exactly when anyone listens.
    live: i64,
    /// Topics that got their first subscriber since the start or since every subscriber was
    /// dropped.
    added: i64,
}

impl Topics {
    /// Whether the subscribers hold too many topics. Right after every subscriber is dropped
    /// libzmq still owes the unsubscriptions of their topics, so `live` stays high for a moment;
    /// only topics added since then count towards dropping them all again.
    fn too_many(&self) -> bool {
        self.live.min(self.added) > MAX_TOPICS
    }
}

/// The endpoints of a producer socket, to bind and connect again, and the `ipc://` socket files
/// its binds created.
struct Endpoints {
    /// As bound (a `*` port resolved, so a rebind takes the same port).
    bound: Vec<String>,
    connect: Vec<String>,
    owned: Vec<OwnedPath>,
}

impl Endpoints {
    /// Drops every peer of `socket` by unbinding and disconnecting every endpoint, then binds
    /// and connects them again. libzmq has no call that drops one peer, and unbinding an
    /// endpoint closes the connections accepted on it.
    fn reopen(&mut self, socket: &zmq::Socket) -> Result<(), ZmqError> {
        for endpoint in &self.bound {
            if let Err(e) = socket.unbind(endpoint) {
                log::warn!("zmq pub: cannot unbind {endpoint}: {e}");
            }
        }
        for endpoint in &self.connect {
            if let Err(e) = socket.disconnect(endpoint) {
                log::warn!("zmq pub: cannot disconnect from {endpoint}: {e}");
            }
        }
        // The files go now: the binds below make new ones (libzmq would unlink them anyway).
        self.owned.clear();
        let give_up = Instant::now() + REBIND_WAIT;
        for endpoint in &self.bound {
            let owned = loop {
                match bind_endpoint(socket, endpoint) {
                    Ok((_, owned)) => break owned,
                    // No event says when libzmq's I/O thread has closed the old listener; this
                    // happens only after a misbehaving peer, never per frame.
                    Err(ZmqError::Bind {
                        source: zmq::Error::EADDRINUSE,
                        ..
                    }) if Instant::now() < give_up => thread::sleep(Duration::from_millis(10)),
                    Err(e) => return Err(e),
                }
            };
            self.owned.extend(owned);
        }
        connect_all(socket, &self.connect)
    }
}

/// Reads the XPUB socket's (un)subscription messages (first byte 1 or 0, then the topic) into
/// `topics`; waits up to `wait` for the first, and stops early once there are too many.
fn read_subscriptions(
    socket: &zmq::Socket,
    topics: &mut Topics,
    wait: Duration,
) -> zmq::Result<()> {
    match socket.poll(zmq::POLLIN, wait.as_millis() as i64) {
        Ok(0) | Err(zmq::Error::EINTR) => return Ok(()),
        Ok(_) => {}
        Err(e) => return Err(e),
    }
    while !topics.too_many() {
        match socket.recv_bytes(zmq::DONTWAIT) {
            Ok(message) => match message.first() {
                Some(1) => {
                    topics.live += 1;
                    topics.added += 1;
                }
                Some(0) => topics.live = (topics.live - 1).max(0),
                _ => {}
            },
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The pub sink: one hub client for all subscribers, which libzmq serves from one message.
struct PubSink<'a> {
    socket: &'a zmq::Socket,
    topics: &'a mut Topics,
    copies: &'a mut Copies,
    /// Part 1 and the payload of each frame: glstream's header, version 2 when frames are
    /// compressed (`--compress`) or carry request ids (`--control`).
    framing: Framing<'a>,
}

impl Sink for PubSink<'_> {
    fn send<F: Frame>(
        &mut self,
        frame: &F,
        shape: &FrameShape,
        deadline: &Deadline<'_>,
    ) -> Result<u64, SendError> {
        read_subscriptions(self.socket, self.topics, Duration::ZERO).map_err(send_error)?;
        if self.topics.live == 0 {
            return Err(SendError::HungUp(io::Error::other("no subscriber left")));
        }
        if self.topics.too_many() {
            return Err(SendError::HungUp(io::Error::other("too many topics")));
        }
        let mut held = Held::default();
        let (header, payload) = self.framing.parts(frame, shape, &mut held)?;
        let total = (header.len() + payload.len()) as u64;
        // XPUB never refuses a message (a full subscriber loses it inside libzmq); the wait is
        // here only in case it ever did.
        loop {
            let wait = deadline.next_wait(frame.frame_index(), 0, total)?;
            if try_send(self.socket, header, payload, self.copies).map_err(send_error)? {
                return Ok(total);
            }
            wait_writable(self.socket, wait).map_err(send_error)?;
        }
    }

    fn close(&mut self, _clean: bool, _deadline: &Deadline<'_>) {
        // The socket stays open for the next subscribers; `serve_pub` closes it at the end.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::protocol::{FrameInfo, MAX_HEADER_LEN};

    /// Part 1 of a frame's message as the sinks write it: the glstream v1 header.
    fn header_part(shape: &FrameShape, frame_index: u64, timestamp_ns: u64) -> [u8; 56] {
        let info = FrameInfo::new(*shape, frame_index, timestamp_ns);
        let mut header = [0u8; MAX_HEADER_LEN];
        protocol::encode(HeaderMode::Glstream, &info, &mut header).unwrap();
        header
    }

    fn shape() -> FrameShape {
        FrameShape {
            width_px: 3,
            height_px: 2,
            format: Format::Rgba8,
            top_down: true,
        }
    }

    #[test]
    fn endpoints_must_be_tcp_or_ipc() {
        assert!(check_endpoint("--zmq-bind", "tcp://127.0.0.1:5555").is_ok());
        assert!(check_endpoint("--zmq-bind", "tcp://*:5555").is_ok());
        assert!(check_endpoint("--zmq-connect", "ipc:///tmp/x.sock").is_ok());
        for bad in [
            "inproc://x",
            "tcp://",
            "127.0.0.1:5555",
            "http://x",
            "",
            "ipc://",
        ] {
            let error = check_endpoint("--zmq-bind", bad).unwrap_err().to_string();
            assert!(error.starts_with("--zmq-bind"), "{error}");
        }
    }

    #[test]
    fn tcp_ports_out_of_range_are_refused_not_wrapped() {
        // libzmq would keep 16 bits of these: 99999 is 34463, 4294967297 is 1.
        for flag in ["--zmq-bind", "--zmq-connect"] {
            for bad in [
                "tcp://127.0.0.1:99999",
                "tcp://127.0.0.1:65536",
                "tcp://127.0.0.1:4294967297",
                "tcp://127.0.0.1:-1",
                "tcp://127.0.0.1:+80",
                "tcp://127.0.0.1: 80",
                "tcp://127.0.0.1:80x",
                "tcp://127.0.0.1:",
                "tcp://127.0.0.1",
                "tcp://:5555",
            ] {
                let error = check_endpoint(flag, bad).unwrap_err().to_string();
                assert!(error.starts_with(&format!("{flag} {bad}: ")), "{error}");
                assert!(!error.contains('\n'), "{error}");
            }
            for good in [
                "tcp://127.0.0.1:1",
                "tcp://127.0.0.1:65535",
                "tcp://[::1]:5555",
                "tcp://localhost:5555",
            ] {
                assert!(check_endpoint(flag, good).is_ok(), "{flag} {good}");
            }
        }
        // Binding takes 0 and * (any free port); connecting takes neither.
        for any in ["tcp://127.0.0.1:0", "tcp://127.0.0.1:*", "tcp://*:*"] {
            assert!(check_endpoint("--zmq-bind", any).is_ok(), "{any}");
            let error = check_endpoint("--zmq-connect", any)
                .unwrap_err()
                .to_string();
            assert!(error.contains("the port must be 1 to 65535"), "{error}");
        }
        let error = check_endpoint("--zmq-bind", "tcp://127.0.0.1:99999").unwrap_err();
        assert!(error.to_string().contains("0 to 65535, or *"), "{error}");
        // The address to connect from (libzmq's SOURCE;HOST:PORT) is checked as a bind.
        assert!(check_endpoint("--zmq-connect", "tcp://127.0.0.1:0;127.0.0.1:5555").is_ok());
        assert!(check_endpoint("--zmq-connect", "tcp://127.0.0.1:*;127.0.0.1:5555").is_ok());
        assert!(check_endpoint("--zmq-connect", "tcp://127.0.0.1:70000;127.0.0.1:5").is_err());
        assert!(check_endpoint("--zmq-connect", "tcp://127.0.0.1:5;127.0.0.1:0").is_err());
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("glstream-zmq-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn header_part_is_the_glstream_header_and_decodes_back() {
        let header = header_part(&shape(), 41, 7);
        assert_eq!(&header[..4], b"GLST");
        let payload = [0u8; 24];
        let decoded = decode_parts(&header, &payload).unwrap();
        assert_eq!(decoded.frame_index, Some(41));
        assert_eq!(decoded.timestamp_ns, Some(7));
        assert_eq!(decoded.top_down, Some(true));
        assert!(matches!(
            decode_parts(&header, &payload[..23]),
            Err(ZmqError::PayloadLength {
                got: 23,
                expected: 24
            })
        ));
        assert!(matches!(
            decode_parts(&header[..55], &payload),
            Err(ZmqError::HeaderLength(55))
        ));
    }

    #[test]
    fn push_and_pull_exchange_two_part_frames_over_ipc() {
        let dir = scratch("push-pull");
        let endpoint = format!("ipc://{}/unit.sock", dir.display());
        // A bare PULL socket: the consumer side (recv's) is tested beside recv.
        let context = zmq::Context::new();
        let pull = context.socket(zmq::PULL).unwrap();
        pull.bind(&endpoint).unwrap();
        let output = bind(&ZmqConfig {
            compress: None,
            pattern: Pattern::Push,
            bind: vec![],
            connect: vec![endpoint],
            hwm: 2,
        })
        .unwrap();
        let header = header_part(&shape(), 5, 0);
        let mut copies = Copies::default();
        let payload = [9u8; 24];
        while !try_send(&output.socket, &header, &payload, &mut copies).unwrap() {
            wait_writable(&output.socket, SLICE).unwrap();
        }
        let parts = pull.recv_multipart(0).unwrap();
        assert_eq!(parts.len(), 2);
        let decoded = decode_parts(&parts[0], &parts[1]).unwrap();
        assert_eq!(decoded.frame_index, Some(5));
        assert_eq!(parts[1], payload);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
