//! The seam between the render loop and every way a frame leaves the process.
//!
//! The render loop publishes frames to one [`Hub`] and knows nothing else. An [`Output`] (the
//! TCP or Unix listener, `--connect`, `--stdout`, and the outputs to come) starts its own
//! threads inside the stream's thread scope and registers a hub client for each consumer it
//! serves; several outputs run side by side on one hub. Each consumer is a [`Sink`]: something
//! that takes one whole frame before a deadline and says how it failed. [`serve_sink`] is the one
//! loop that feeds a sink from the hub, applies the deadline and logs how the consumer left, so
//! every output states only what is its own: where consumers come from and how bytes reach them.
//!
//! Lifetimes carry the safety of the hand-off: a frame borrows the GL context (see
//! `gl::readback`), and outputs only get a [`std::thread::Scope`] inside that borrow to spawn on,
//! so no output thread can hold a frame past the end of the stream.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Scope;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use thiserror::Error;

use super::encode::{Encoded, Encoder, Encoding, Target};
use super::hub::{ClientId, ClientTotals, Frame, Hub, Policy};
use super::metrics::{OutputRegistry, StageTimes};
use super::protocol::{self, FrameInfo, HeaderMode, MAX_HEADER_LEN};
use crate::gl::readback::Lender;

/// What every frame of a stream looks like (defined with the pixel formats).
pub use crate::format::FrameShape;

/// Counters the render loop reads for its once-a-second stats line and its summary.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes delivered to all consumers, headers included.
    pub bytes_sent: AtomicU64,
    /// Nanoseconds sinks spent sending, summed over sinks.
    pub send_ns: AtomicU64,
    /// Frames rendered so far (kept by the production observer).
    pub frames_rendered: AtomicU64,
    /// When the newest frame was rendered, nanoseconds since the Unix epoch (0: none yet).
    pub last_frame_ns: AtomicU64,
    /// Time per stage: render and readback from the render loop, send from [`serve_sink`].
    pub stages: StageTimes,
    /// Per-output consumer counters.
    pub outputs: OutputRegistry,
}

/// Everything an output is given: the hub to take frames from, the stream's settings, the
/// counters, and a way to end or fail the run.
pub struct Feed<F> {
    /// Where published frames are taken from.
    pub hub: Hub<F>,
    /// What every frame looks like.
    pub shape: FrameShape,
    /// How long one frame may take to reach one consumer before it is dropped.
    pub send_timeout: Duration,
    /// Consumers beyond this many are refused.
    pub max_clients: usize,
    /// Delivery counters.
    pub stats: Stats,
    ended: AtomicBool,
    failure: Mutex<Option<String>>,
    /// Worker threads that encode a frame's strips (`--compress-threads`).
    compress_threads: usize,
    /// Their pool, made when the first encoder is.
    pool: OnceLock<Arc<rayon::ThreadPool>>,
    /// The encode stage: one encoder per target any output asked for.
    encoders: Mutex<Vec<Arc<Encoder>>>,
    /// Whether frames carry the id of the control request they answer, so that glstream
    /// headers must be version 2 (the one with the field).
    pub request_ids: bool,
    /// Memory an output lends for frames to be read straight into (the first offer).
    lending: OnceLock<Lending>,
}

/// An output's offer of memory to read frames straight into ([`Feed::lend`]); the render loop
/// takes it up when that output is the stream's only one and (unless `always`) the renderer is
/// a software one, where the read costs what a read into a PBO does and so saves a copy.
pub struct Lending {
    /// Who lends.
    pub lender: Arc<dyn Lender>,
    /// Whether to read into it on any renderer, not only software ones.
    pub always: bool,
    /// The output, for the log line (`shm:glstream/frames`).
    pub what: String,
}

impl<F: Frame> Feed<F> {
    /// A feed whose hub holds at most `capacity` published frames.
    pub fn new(
        capacity: usize,
        shape: FrameShape,
        send_timeout: Duration,
        max_clients: usize,
    ) -> Self {
        Self {
            hub: Hub::new(capacity),
            shape,
            send_timeout,
            max_clients,
            stats: Stats::default(),
            ended: AtomicBool::new(false),
            failure: Mutex::new(None),
            compress_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pool: OnceLock::new(),
            encoders: Mutex::new(Vec::new()),
            request_ids: false,
            lending: OnceLock::new(),
        }
    }

    /// Offers memory to read frames straight into (see [`Lending`]); the first offer stands.
    pub fn lend(&self, lending: Lending) {
        let _ = self.lending.set(lending);
    }

    /// The memory offered to read frames into, if any output offered some.
    pub fn lending(&self) -> Option<&Lending> {
        self.lending.get()
    }

    /// Frames carry control request ids (`--control`): glstream headers are version 2.
    pub fn with_request_ids(mut self, request_ids: bool) -> Self {
        self.request_ids = request_ids;
        self
    }

    /// Encodes with `threads` worker threads (and cuts compressed frames into as many strips).
    pub fn with_compress_threads(mut self, threads: usize) -> Self {
        self.compress_threads = threads.max(1);
        self
    }

    /// The encoder of frames for `target`, which encodes each frame once for every consumer
    /// that wants the same (see `stream::encode`); each consumer takes its handle with
    /// [`Encoder::demand`]. The first call for a target makes the encoder, and for `--compress`
    /// starts its run-ahead thread in `scope`, taking frames with `policy` (the stream's).
    pub fn encoder<'scope, 'env>(
        &'env self,
        scope: &'scope Scope<'scope, 'env>,
        target: Target,
        policy: Policy,
    ) -> Result<Arc<Encoder>, OutputError> {
        let mut encoders = self.encoders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(encoder) = encoders.iter().find(|e| e.target() == target) {
            return Ok(Arc::clone(encoder));
        }
        let pool = match self.pool.get() {
            Some(pool) => Arc::clone(pool),
            None => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(self.compress_threads)
                    .thread_name(|i| format!("encode-{i}"))
                    .build()
                    .map_err(|e| OutputError::Thread {
                        what: "encode".into(),
                        source: io::Error::other(e),
                    })?;
                Arc::clone(self.pool.get_or_init(|| Arc::new(pool)))
            }
        };
        let encoder = Encoder::new(target, self.shape, self.compress_threads, pool)
            .map(Arc::new)
            .map_err(|e| OutputError::Setup {
                what: "encode".into(),
                source: Box::new(e),
            })?;
        if matches!(target, Target::Strips(_)) {
            let runner = Arc::clone(&encoder);
            std::thread::Builder::new()
                .name("encode".into())
                .spawn_scoped(scope, move || {
                    runner.run_ahead(&self.hub, policy, &self.stats.stages.encode)
                })
                .map_err(|source| OutputError::Thread {
                    what: "encode".into(),
                    source,
                })?;
        }
        encoders.push(Arc::clone(&encoder));
        Ok(encoder)
    }

    /// Registers a hub client for a consumer of the output called `output` (`tcp`, `http`,
    /// ...), whose counters [`serve_sink`] then keeps.
    pub fn register(&self, output: &str, policy: Policy) -> ClientId {
        let counters = self.stats.outputs.output(output);
        let id = self.hub.register(policy);
        self.stats.outputs.attach(id, counters);
        id
    }

    /// Deregisters a hub client, and stops counting it as connected.
    pub fn deregister(&self, id: ClientId) -> ClientTotals {
        self.stats.outputs.detach(id);
        self.hub.deregister(id)
    }

    /// Ends the stream: an output whose only consumer is gone (stdout) has nobody left to serve.
    pub fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        // The render loop may be waiting in the hub (for clients, for a frame's writers, for
        // its pace): it looks at `is_ended` once woken.
        self.hub.interrupt();
    }

    /// Whether an output ended the stream.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Ends the stream and makes the run fail with `message` (a recording that could not be
    /// written). The first failure is kept.
    pub fn fail(&self, message: String) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure.get_or_insert(message);
        drop(failure);
        self.end();
    }

    /// The failure an output reported, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a consumer is sent for each frame, header and payload: the raw pixels after the chosen
/// header, after an uncompressed glstream version 2 header that carries the control request the
/// frame answers (`--control`), or the frame's encoding with its version 2 header
/// (`--compress`). The socket outputs and ZeroMQ build every frame's parts through it.
pub enum Framing<'env> {
    /// The raw pixels after this header (a glstream one is version 1).
    Header(HeaderMode),
    /// The raw pixels after an uncompressed version 2 header, built in this buffer.
    Tagged(Vec<u8>),
    /// The encode stage's encoding of the frame.
    Encoded(Encoding<'env>),
}

/// What a frame's parts borrow from while it is sent: the header [`Framing::Header`] writes,
/// the encoding [`Framing::Encoded`] holds.
pub struct Held {
    header: [u8; MAX_HEADER_LEN],
    encoded: Option<Arc<Encoded>>,
}

impl Default for Held {
    fn default() -> Self {
        Self {
            header: [0; MAX_HEADER_LEN],
            encoded: None,
        }
    }
}

impl<'env> Framing<'env> {
    /// The framing of one consumer of an output whose frames go behind `header`, compressed by
    /// `encoder` if there is one (taking its demand now, before the consumer registers), tagged
    /// with request ids when `feed`'s frames carry them and the header is glstream's.
    pub fn new<F: Frame>(
        header: HeaderMode,
        encoder: Option<&Arc<Encoder>>,
        feed: &'env Feed<F>,
    ) -> Self {
        match encoder {
            Some(encoder) => Framing::Encoded(encoder.demand(&feed.stats.stages.encode)),
            None if header == HeaderMode::Glstream && feed.request_ids => {
                Framing::Tagged(Vec::new())
            }
            None => Framing::Header(header),
        }
    }

    /// `frame`'s header and payload, as this consumer is sent them.
    pub fn parts<'a, F: Frame>(
        &'a mut self,
        frame: &'a F,
        shape: &FrameShape,
        held: &'a mut Held,
    ) -> Result<(&'a [u8], &'a [u8]), SendError> {
        let info = || FrameInfo::new(*shape, frame.frame_index(), frame.timestamp_ns());
        match self {
            Framing::Header(mode) => {
                // The size was checked against the header when the stream was set up.
                let len = protocol::encode(*mode, &info(), &mut held.header).unwrap_or(0);
                Ok((&held.header[..len], frame.bytes()))
            }
            Framing::Tagged(buffer) => {
                protocol::encode_tagged(&info().answering(frame.request_id()), buffer)
                    .map_err(|e| SendError::Failed(io::Error::other(e)))?;
                Ok((&buffer[..], frame.bytes()))
            }
            Framing::Encoded(encoding) => {
                let encoded = held.encoded.insert(
                    encoding
                        .get(frame)
                        .map_err(|e| SendError::Failed(io::Error::other(e.to_string())))?,
                );
                Ok((&encoded.header[..], &encoded.payload[..]))
            }
        }
    }
}

/// Why an output could not start.
#[derive(Debug, Error)]
pub enum OutputError {
    /// A thread could not be spawned.
    #[error("cannot start the {what} thread")]
    Thread {
        /// Which thread.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// What the output serves through could not be set up (a shared-memory service that exists
    /// with other settings, or that another process publishes on).
    #[error("cannot start the {what} output")]
    Setup {
        /// Which output.
        what: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why an output could not be bound: the output's own error (a port in use, a path that is not a
/// socket, a bad service name), with its causes.
pub type BindError = Box<dyn std::error::Error + Send + Sync>;

/// One output as the command line configured it: validated, not yet bound. Each output module
/// defines its own (`socket::SocketConfig`, `shm::ShmConfig`, `zmq::ZmqConfig`,
/// `http::HttpConfig`), the command line builds a list of them from each output's flags, and the
/// render loop binds and starts whatever the list holds without knowing what it is.
pub trait OutputConfig<F: Frame>: std::fmt::Debug + Send + Sync {
    /// Whether its consumers learn each frame's index from it (a header that carries one), so
    /// that a shard of a render farm (`--shard`) can be put back in order.
    fn carries_frame_index(&self) -> bool;

    /// Whether its frames are compressed (`--compress`: the socket outputs and ZeroMQ).
    fn compresses(&self) -> bool {
        false
    }

    /// Binds what consumers reach (a port, a socket file, stdout, a service name, endpoints),
    /// before GL starts, so that a port in use fails at once.
    fn bind(&self) -> Result<Box<dyn Output<F>>, BindError>;
}

/// One way frames leave the process (a listener, a connection, a pipe, a shared-memory service).
pub trait Output<F: Frame>: Send {
    /// The line printed on stdout once consumers can reach it (`listening on ...`), if any.
    fn announcement(&self) -> Option<String>;

    /// The policy this output's consumers get when the user chose `chosen` (`--policy`, if
    /// given). The render loop sizes the readback ring from it: a stream whose every output
    /// is lossless needs one spare buffer, not one per possible latest client.
    fn policy(&self, chosen: Option<Policy>) -> Policy {
        chosen.unwrap_or(Policy::Latest)
    }

    /// Starts serving in `scope`: spawns the threads that find consumers and feed them through
    /// [`serve_sink`], registering them with `policy` (what [`Output::policy`] resolved, once,
    /// for the whole stream: the ring was sized from the same value). They must return once the
    /// hub is finished, so that the scope, and the stream, can end.
    fn start<'scope, 'env>(
        self: Box<Self>,
        scope: &'scope Scope<'scope, 'env>,
        feed: &'env Feed<F>,
        policy: Policy,
    ) -> Result<(), OutputError>;
}

/// How a send failed.
#[derive(Debug, Error)]
pub enum SendError {
    /// The consumer went away (reset, broken pipe, closed): an ordinary event.
    #[error("hung up ({0})")]
    HungUp(io::Error),
    /// The frame did not get through before its deadline.
    #[error("send timeout: {sent} of {total} bytes of frame {frame_index} in {elapsed:.1?}")]
    TimedOut {
        /// The frame's index.
        frame_index: u64,
        /// Bytes that got through.
        sent: u64,
        /// Bytes the frame has.
        total: u64,
        /// How long it tried.
        elapsed: Duration,
    },
    /// The stream was cut short (a signal's grace period ran out) in the middle of a frame.
    #[error("cut off at shutdown: {sent} of {total} bytes of the last frame")]
    Aborted {
        /// Bytes that got through.
        sent: u64,
        /// Bytes the frame has.
        total: u64,
    },
    /// Any other failure of the consumer's channel.
    #[error("{0}")]
    Failed(io::Error),
}

impl SendError {
    /// Sorts an I/O error into a hang-up or another failure.
    pub fn from_io(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::WriteZero
            | io::ErrorKind::UnexpectedEof => SendError::HungUp(e),
            _ => SendError::Failed(e),
        }
    }
}

/// The limits of one send: a deadline for the whole frame, and the hub's abort flag.
pub struct Deadline<'a> {
    /// When the frame must be through.
    pub at: Instant,
    /// When the send began.
    pub started: Instant,
    /// True once the stream is cut short; a sink checks it at least every [`SLICE`], unless it
    /// polls `abort_fd`.
    pub aborted: &'a dyn Fn() -> bool,
    /// Readable once the stream is cut short ([`Hub::aborted_fd`]): a sink that waits for its
    /// consumer with `poll` waits on both and needs no slices ([`Deadline::poll`]).
    pub abort_fd: Option<BorrowedFd<'a>>,
}

/// The longest a sink may wait without looking at its deadline and the abort flag.
pub const SLICE: Duration = Duration::from_millis(50);

impl Deadline<'_> {
    /// How long a sink may wait now before it must look again: up to [`SLICE`], never past the
    /// deadline. `Err` once the deadline or an abort has come, with the bytes sent so far.
    pub fn next_wait(
        &self,
        frame_index: u64,
        sent: u64,
        total: u64,
    ) -> Result<Duration, SendError> {
        if (self.aborted)() {
            return Err(SendError::Aborted { sent, total });
        }
        let now = Instant::now();
        if now >= self.at {
            return Err(SendError::TimedOut {
                frame_index,
                sent,
                total,
                elapsed: now - self.started,
            });
        }
        Ok((self.at - now).min(SLICE))
    }
}

impl Deadline<'_> {
    /// Waits until `fd` is ready for `flags`, the stream is cut short, or the deadline passes,
    /// with one `poll` on `fd` and the abort descriptor (in [`SLICE`]s only when there is no
    /// such descriptor). `Ok(())` when `fd` may be ready (a caller retries its I/O); `Err` at
    /// the deadline or an abort, with the bytes sent so far.
    pub fn poll(
        &self,
        fd: BorrowedFd<'_>,
        flags: PollFlags,
        frame_index: u64,
        sent: u64,
        total: u64,
    ) -> Result<(), SendError> {
        let wait = self.next_wait(frame_index, sent, total)?;
        let wait = match self.abort_fd {
            Some(_) => self.at.saturating_duration_since(Instant::now()),
            None => wait,
        };
        let timeout = Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: wait.subsec_nanos() as i64,
        };
        let mut fds = [
            PollFd::from_borrowed_fd(fd, flags),
            PollFd::from_borrowed_fd(self.abort_fd.unwrap_or(fd), PollFlags::IN),
        ];
        let count = if self.abort_fd.is_some() { 2 } else { 1 };
        match poll(&mut fds[..count], Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(SendError::from_io(e.into())),
        }
    }
}

/// One consumer of published frames.
pub trait Sink {
    /// Delivers one whole frame before `deadline`; returns the bytes delivered.
    fn send<F: Frame>(
        &mut self,
        frame: &F,
        shape: &FrameShape,
        deadline: &Deadline<'_>,
    ) -> Result<u64, SendError>;

    /// Ends the consumer's channel. `clean` when the stream is over and every frame was
    /// delivered: a sink then makes sure the consumer gets them all before it closes (bounded by
    /// `deadline`); otherwise it closes at once.
    fn close(&mut self, clean: bool, deadline: &Deadline<'_>);

    /// When the sink next wants a frame: a sink that paces itself (a preview at its own rate)
    /// says so, and [`serve_sink`] waits until then before it takes one, so that the frames in
    /// between are skipped by the hub instead of taken and thrown away. `None`: at once.
    fn next_due(&mut self) -> Option<Instant> {
        None
    }
}

/// How a consumer left.
#[derive(Debug)]
pub struct Departure {
    /// Frames it was sent.
    pub frames: u64,
    /// Why it left early; `None` when it had every frame it was due.
    pub failure: Option<SendError>,
}

/// Feeds `sink`, registered as hub client `id`, until the stream ends or the consumer fails,
/// then deregisters it and logs how it left.
pub fn serve_sink<F: Frame>(
    feed: &Feed<F>,
    id: ClientId,
    mut sink: impl Sink,
    name: &str,
) -> Departure {
    let hub = &feed.hub;
    let aborted = || hub.is_aborted();
    let counters = feed.stats.outputs.of(id);
    let mut failure = None;
    let mut announced = false;
    let mut last_sequence = None;
    loop {
        if let Some(due) = sink.next_due() {
            // On the hub, so that the end of the stream ends the wait at once.
            let left = due.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                hub.wait_finished(left);
            }
        }
        let Some(frame) = hub.next_frame(id) else {
            break;
        };
        let sequence = frame.sequence();
        let started = Instant::now();
        let deadline = Deadline {
            at: started + feed.send_timeout,
            started,
            aborted: &aborted,
            abort_fd: hub.aborted_fd(),
        };
        let result = sink.send(&frame, &feed.shape, &deadline);
        drop(frame);
        let elapsed = started.elapsed();
        if result.is_ok() && !announced {
            announced = true;
            log::info!("{name} connected ({} connected)", hub.client_count());
        }
        // After the announcement, and with Release: an observer that sees time spent sending
        // (bench opens its allocation-free window on it) sees the announcement's allocations
        // done. Counted before it, a loaded machine could run the window's start between the
        // two, and the log line's allocations landed in the window (issue 18, item 17).
        feed.stats
            .send_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Release);
        feed.stats.stages.send.observe(elapsed);
        match result {
            Ok(bytes) => {
                feed.stats.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                // A sink may pass a frame by (0 bytes: an MJPEG viewer still writing the one
                // before): it counts as skipped, not sent.
                if let Some(c) = counters.as_ref().filter(|_| bytes > 0) {
                    c.bytes.fetch_add(bytes, Ordering::Relaxed);
                    c.frames.fetch_add(1, Ordering::Relaxed);
                    let skipped = last_sequence.map_or(0, |last: u64| sequence - last - 1);
                    c.skipped.fetch_add(skipped, Ordering::Relaxed);
                }
                if bytes > 0 {
                    last_sequence = Some(sequence);
                }
                hub.sent(id, sequence);
                log::trace!("{name}: sent frame {sequence}");
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let clean = failure.is_none();
    let started = Instant::now();
    sink.close(
        clean,
        &Deadline {
            at: started + feed.send_timeout,
            started,
            aborted: &aborted,
            abort_fd: hub.aborted_fd(),
        },
    );
    if let Some(c) = &counters
        && matches!(
            failure,
            Some(SendError::TimedOut { .. } | SendError::Failed(_))
        )
    {
        c.dropped.fetch_add(1, Ordering::Relaxed);
    }
    let totals = feed.deregister(id);
    let remaining = hub.client_count();
    let skipped = if totals.skipped > 0 {
        format!(", {} skipped", totals.skipped)
    } else {
        String::new()
    };
    match &failure {
        // It never took a frame: a probe (`--unix` checking for a live server) or a client
        // that gave up at once, not worth a line at info.
        _ if !announced => log::debug!("{name} left before its first frame"),
        None => log::info!(
            "{name}: done after {} frames{skipped} ({remaining} connected)",
            totals.sent
        ),
        Some(SendError::HungUp(_)) => log::info!(
            "{name}: left after {} frames{skipped} ({remaining} connected)",
            totals.sent
        ),
        Some(e) => log::info!(
            "{name}: dropped after {} frames{skipped}: {e} ({remaining} connected)",
            totals.sent
        ),
    }
    Departure {
        frames: totals.sent,
        failure,
    }
}
