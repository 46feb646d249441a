//! The ZeroMQ outputs (`--zmq-bind`, `--zmq-connect`) and the message-parts contract both ends of
//! a ZeroMQ stream share (`glstream recv --zmq-*` opens its socket here too).
//!
//! **Message parts.** Every frame is one two-part message: part 1 is exactly the 56-byte
//! glstream v1 header ([`protocol::GLSTREAM_HEADER_LEN`]: frame index, timestamp, size, format,
//! stride), part 2 the payload (`payload length` bytes, nothing else). ZeroMQ delivers the parts
//! of a message together or not at all, so a consumer always holds a whole frame and knows which
//! one. [`header_part`] writes part 1, [`decode_parts`] checks a received pair.
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
use std::thread::{self, Scope};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::hub::{Frame, Hub, Policy};
use super::output::{
    Deadline, Feed, FrameShape, Output, OutputError, SLICE, SendError, Sink, serve_sink,
};
use super::protocol::{
    self, Decoded, GLSTREAM_HEADER_LEN, HeaderMode, MAX_HEADER_LEN, ProtocolError,
};
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
}

/// How long a socket may still deliver queued frames after a shutdown (a signal).
pub const STOP_LINGER: Duration = Duration::from_millis(100);

/// Why a ZeroMQ socket could not be set up, or a message not read.
#[derive(Debug, Error)]
pub enum ZmqError {
    /// An endpoint glstream does not serve (only `tcp://` and `ipc://` reach another process).
    #[error("{flag} {endpoint}: expected tcp://HOST:PORT or ipc://PATH")]
    BadEndpoint {
        /// The option that gave it.
        flag: &'static str,
        /// The endpoint.
        endpoint: String,
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
    #[error("header part of {0} bytes (expected {GLSTREAM_HEADER_LEN})")]
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

/// Checks that `endpoint` is one glstream serves: `tcp://` or `ipc://` with something after it.
pub fn check_endpoint(flag: &'static str, endpoint: &str) -> Result<(), ZmqError> {
    let rest = endpoint
        .strip_prefix("tcp://")
        .or_else(|| endpoint.strip_prefix("ipc://"));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(ZmqError::BadEndpoint {
            flag,
            endpoint: endpoint.to_string(),
        }),
    }
}

/// A socket with its options set and every endpoint bound or connected; returns it with the
/// endpoints as bound (a `*` port resolved).
fn open(
    context: &zmq::Context,
    kind: zmq::SocketType,
    what: &'static str,
    bind: &[String],
    connect: &[String],
    configure: impl FnOnce(&zmq::Socket) -> zmq::Result<()>,
) -> Result<(zmq::Socket, Vec<String>), ZmqError> {
    let socket_error = |step| move |source| ZmqError::Socket { what, step, source };
    let socket = context.socket(kind).map_err(socket_error("create"))?;
    // libzmq's default linger is forever: closing with frames queued for an absent peer would
    // hang the exit. The close sets the linger it wants.
    socket.set_linger(0).map_err(socket_error("linger"))?;
    configure(&socket).map_err(socket_error("options"))?;
    let mut bound = Vec::with_capacity(bind.len());
    for endpoint in bind {
        socket.bind(endpoint).map_err(|source| ZmqError::Bind {
            endpoint: endpoint.clone(),
            source,
        })?;
        // The endpoint as bound: `tcp://127.0.0.1:*` becomes the port the kernel picked.
        let resolved = socket
            .get_last_endpoint()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| endpoint.clone());
        bound.push(resolved);
    }
    for endpoint in connect {
        socket
            .connect(endpoint)
            .map_err(|source| ZmqError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
    }
    Ok((socket, bound))
}

/// Part 1 of a frame's message: the glstream v1 header.
pub fn header_part(shape: &FrameShape, frame_index: u64, timestamp_ns: u64) -> [u8; 56] {
    let info = shape.info(frame_index, timestamp_ns);
    let mut header = [0u8; MAX_HEADER_LEN];
    // The glstream header describes any size GL can render (u32 fields); `check_size` ran for
    // the stream's shape before the outputs started.
    let _ = protocol::encode(HeaderMode::Glstream, &info, &mut header);
    header
}

/// Checks a received [header, payload] pair against the contract and returns what the header
/// says.
pub fn decode_parts(header: &[u8], payload: &[u8]) -> Result<Decoded, ZmqError> {
    if header.len() != GLSTREAM_HEADER_LEN {
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
    // The socket holds a handle on the context too; the context is kept to close them together.
    context: zmq::Context,
    socket: zmq::Socket,
    bound: Vec<String>,
    connect: Vec<String>,
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
    let (socket, bound) = open(
        &context,
        kind,
        what,
        &config.bind,
        &config.connect,
        |socket| socket.set_sndhwm(hwm),
    )?;
    Ok(ZmqOutput {
        pattern: config.pattern,
        context,
        socket,
        bound,
        connect: config.connect.clone(),
    })
}

impl ZmqOutput {
    /// The endpoints as bound (a `*` port resolved).
    pub fn bound(&self) -> &[String] {
        &self.bound
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
        let mut line = format!("zmq {}", self.pattern.name());
        if !self.bound.is_empty() {
            line += &format!(" listening on {}", self.bound.join(" "));
        }
        if !self.connect.is_empty() {
            if !self.bound.is_empty() {
                line.push(',');
            }
            line += &format!(" connecting to {}", self.connect.join(" "));
        }
        Some(line)
    }

    fn start<'scope, 'env>(
        self: Box<Self>,
        scope: &'scope Scope<'scope, 'env>,
        feed: &'env Feed<F>,
    ) -> Result<(), OutputError> {
        let ZmqOutput {
            pattern,
            context,
            socket,
            ..
        } = *self;
        let name = format!("zmq-{}", pattern.name());
        let body: Box<dyn FnOnce() + Send + 'scope> = match pattern {
            Pattern::Push => {
                // Registered before any frame is rendered, so the peers get frame 0 first: a
                // push producer always renders, and waits on its peers.
                let id = feed.register("zmq", Policy::Lossless);
                Box::new(move || {
                    let sink = PushSink {
                        socket: Some((socket, context)),
                        hub: &feed.hub,
                        copies: Copies::default(),
                    };
                    serve_sink(feed, id, sink, "zmq push");
                })
            }
            Pattern::Pub => Box::new(move || serve_pub(feed, socket, context)),
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
    let closing = thread::Builder::new()
        .name("zmq-close".into())
        .spawn(move || {
            drop(socket);
            // zmq_ctx_term: returns once the queued messages are out or the linger is over.
            drop(context);
        });
    // If the thread cannot start, the closure was dropped: the socket closed in place.
    let Ok(closing) = closing else { return };
    while !closing.is_finished() {
        if deadline.next_wait(0, 0, 0).is_err() {
            log::info!("{name}: not waiting any longer for libzmq to deliver queued frames");
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The push sink: the socket (until closed), the hub (to see a shutdown), the copy timings.
struct PushSink<'a, F> {
    socket: Option<(zmq::Socket, zmq::Context)>,
    hub: &'a Hub<F>,
    copies: Copies,
}

impl<F: Frame> Sink for PushSink<'_, F> {
    fn send<G: Frame>(
        &mut self,
        frame: &G,
        shape: &FrameShape,
        deadline: &Deadline<'_>,
    ) -> Result<u64, SendError> {
        let header = header_part(shape, frame.frame_index(), frame.timestamp_ns());
        let payload = frame.bytes();
        let total = (header.len() + payload.len()) as u64;
        let Some((socket, _)) = &self.socket else {
            return Err(SendError::Aborted { sent: 0, total });
        };
        loop {
            // Peers at their high-water mark are back-pressure, not a failure: no timeout, but
            // a shutdown ends the wait (nothing of this frame is sent yet, so nothing is torn).
            if (deadline.aborted)() || self.hub.is_shut_down() {
                return Err(SendError::Aborted { sent: 0, total });
            }
            if try_send(socket, &header, payload, &mut self.copies).map_err(send_error)? {
                return Ok(total);
            }
            wait_writable(socket, SLICE).map_err(send_error)?;
        }
    }

    fn close(&mut self, clean: bool, deadline: &Deadline<'_>) {
        self.copies.log("zmq push");
        if let Some((socket, context)) = self.socket.take() {
            let deliver = clean && !self.hub.is_shut_down();
            close_socket(socket, context, deliver, deadline, "zmq push");
        }
    }
}

/// The pub side: waits for subscribers, serves them as one hub client while there are any, and
/// goes idle (no hub client, so nothing is rendered) when the last one leaves.
fn serve_pub<F: Frame>(feed: &Feed<F>, socket: zmq::Socket, context: zmq::Context) {
    let hub = &feed.hub;
    let mut topics: i64 = 0;
    let mut copies = Copies::default();
    let mut failed = false;
    while !hub.is_finished() {
        if let Err(e) = read_subscriptions(&socket, &mut topics, Duration::from_millis(100)) {
            log::warn!("zmq pub: cannot read subscriptions: {e}");
            failed = true;
            break;
        }
        if topics > 0 && !hub.is_finished() {
            let id = feed.register("zmq", Policy::Latest);
            log::info!("zmq pub: subscribed to; rendering");
            let sink = PubSink {
                socket: &socket,
                topics: &mut topics,
                copies: &mut copies,
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
}

/// Reads the XPUB socket's (un)subscription messages (first byte 1 or 0, then the topic) and
/// keeps the count of subscribed topics; waits up to `wait` for the first.
fn read_subscriptions(socket: &zmq::Socket, topics: &mut i64, wait: Duration) -> zmq::Result<()> {
    match socket.poll(zmq::POLLIN, wait.as_millis() as i64) {
        Ok(0) | Err(zmq::Error::EINTR) => return Ok(()),
        Ok(_) => {}
        Err(e) => return Err(e),
    }
    loop {
        match socket.recv_bytes(zmq::DONTWAIT) {
            Ok(message) => match message.first() {
                Some(1) => *topics += 1,
                Some(0) => *topics = (*topics - 1).max(0),
                _ => {}
            },
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The pub sink: one hub client for all subscribers, which libzmq serves from one message.
struct PubSink<'a> {
    socket: &'a zmq::Socket,
    topics: &'a mut i64,
    copies: &'a mut Copies,
}

impl Sink for PubSink<'_> {
    fn send<F: Frame>(
        &mut self,
        frame: &F,
        shape: &FrameShape,
        deadline: &Deadline<'_>,
    ) -> Result<u64, SendError> {
        read_subscriptions(self.socket, self.topics, Duration::ZERO).map_err(send_error)?;
        if *self.topics == 0 {
            return Err(SendError::HungUp(io::Error::other("no subscriber left")));
        }
        let header = header_part(shape, frame.frame_index(), frame.timestamp_ns());
        let payload = frame.bytes();
        let total = (header.len() + payload.len()) as u64;
        // XPUB never refuses a message (a full subscriber loses it inside libzmq); the wait is
        // here only in case it ever did.
        loop {
            let wait = deadline.next_wait(frame.frame_index(), 0, total)?;
            if try_send(self.socket, &header, payload, self.copies).map_err(send_error)? {
                return Ok(total);
            }
            wait_writable(self.socket, wait).map_err(send_error)?;
        }
    }

    fn close(&mut self, _clean: bool, _deadline: &Deadline<'_>) {
        // The socket stays open for the next subscribers; `serve_pub` closes it at the end.
    }
}

/// The consumer side of the contract: a PULL or SUB socket, and two messages reused for every
/// frame.
pub struct Receiver {
    // Dropped after the socket (field order), with linger 0: a consumer has nothing to deliver.
    socket: zmq::Socket,
    _context: zmq::Context,
    header: zmq::Message,
    payload: zmq::Message,
    bound: Vec<String>,
}

/// One frame as received: the decoded header and the payload, borrowed from the receiver.
pub struct Parts<'a> {
    /// What part 1 says.
    pub header: Decoded,
    /// Part 2.
    pub payload: &'a [u8],
    /// Bytes of both parts.
    pub bytes: u64,
}

/// Opens a consumer socket (`hwm` frames of receive buffer per peer), SUB subscribed to every
/// frame.
pub fn receiver(
    pattern: RecvPattern,
    bind: &[String],
    connect: &[String],
    hwm: u32,
) -> Result<Receiver, ZmqError> {
    for endpoint in bind {
        check_endpoint("--zmq-bind", endpoint)?;
    }
    for endpoint in connect {
        check_endpoint("--zmq-connect", endpoint)?;
    }
    let context = zmq::Context::new();
    let (kind, what) = match pattern {
        RecvPattern::Pull => (zmq::PULL, "PULL"),
        RecvPattern::Sub => (zmq::SUB, "SUB"),
    };
    let hwm = i32::try_from(hwm).unwrap_or(i32::MAX);
    let (socket, bound) = open(&context, kind, what, bind, connect, |socket| {
        socket.set_rcvhwm(hwm)?;
        if pattern == RecvPattern::Sub {
            socket.set_subscribe(b"")?;
        }
        Ok(())
    })?;
    Ok(Receiver {
        socket,
        _context: context,
        header: zmq::Message::new(),
        payload: zmq::Message::new(),
        bound,
    })
}

impl Receiver {
    /// The endpoints as bound (a `*` port resolved).
    pub fn bound(&self) -> &[String] {
        &self.bound
    }

    /// Waits up to `wait` for a message and checks it against the contract; `Ok(None)` when
    /// none came.
    pub fn recv(&mut self, wait: Duration) -> Result<Option<Parts<'_>>, ZmqError> {
        match self.socket.poll(zmq::POLLIN, wait.as_millis() as i64) {
            Ok(0) | Err(zmq::Error::EINTR) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(ZmqError::Recv(e)),
        }
        match self.socket.recv(&mut self.header, zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(None),
            Err(e) => return Err(ZmqError::Recv(e)),
        }
        if !self.header.get_more() {
            return Err(ZmqError::Parts(1));
        }
        // The parts of a message arrive together: the second is already here.
        self.socket
            .recv(&mut self.payload, 0)
            .map_err(ZmqError::Recv)?;
        if self.payload.get_more() {
            let mut parts = 2;
            let mut rest = zmq::Message::new();
            while self.socket.recv(&mut rest, 0).is_ok() {
                parts += 1;
                if !rest.get_more() {
                    break;
                }
            }
            return Err(ZmqError::Parts(parts));
        }
        let header = decode_parts(&self.header, &self.payload)?;
        Ok(Some(Parts {
            header,
            payload: &self.payload,
            bytes: (self.header.len() + self.payload.len()) as u64,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in ["inproc://x", "tcp://", "127.0.0.1:5555", "http://x", ""] {
            let error = check_endpoint("--zmq-bind", bad).unwrap_err().to_string();
            assert!(error.starts_with("--zmq-bind"), "{error}");
        }
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
        let dir = std::env::temp_dir().join(format!("glstream-zmq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let endpoint = format!("ipc://{}/unit.sock", dir.display());
        let mut pull =
            receiver(RecvPattern::Pull, std::slice::from_ref(&endpoint), &[], 2).unwrap();
        let output = bind(&ZmqConfig {
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
        let parts = loop {
            if let Some(parts) = pull.recv(Duration::from_millis(100)).unwrap() {
                break parts;
            }
        };
        assert_eq!(parts.header.frame_index, Some(5));
        assert_eq!(parts.payload, &payload[..]);
        assert_eq!(parts.bytes, 56 + 24);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
