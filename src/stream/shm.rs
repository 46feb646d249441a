//! The shared-memory output (`--shm SERVICE`) and its consumer side, on iceoryx2.
//!
//! Every frame is published on the iceoryx2 publish-subscribe service SERVICE with payload type
//! `[u8]` (stride × height bytes, the pixels the socket outputs send) and user header
//! [`FrameHeader`]. That pair of types is the whole contract: a subscriber opens the service with
//! only those two types, in any language iceoryx2 binds (`iceoryx2==0.10.0` from PyPI for
//! Python), and glstream chooses everything else (the quality of service in [`QOS`]). The
//! contract lives here and only here; README.md writes it out and the tests read it from Python.
//! glstream publishes only on a service with its own settings (one publisher at most, [`QOS`]'s
//! queues): one that another program created, with iceoryx2's defaults or anything else, is
//! refused ([`glstream_made`]), so two publishers can never share a service. A subscriber checks
//! every header against its payload with arithmetic that cannot wrap ([`FrameHeader::check`]):
//! the publisher is another process, maybe not glstream.
//!
//! The output is one hub client standing for every subscriber: it registers with the hub when the
//! first subscriber appears (so a subscriber of an idle stream gets frame 0 first) and leaves it
//! when the last has gone (so an idle stream renders nothing), noticed at the next frame. Each
//! frame is copied once, from the mapped PBO into a sample loaned from iceoryx2's shared memory,
//! and sent. `--policy latest` is iceoryx2's safe overflow (a subscriber that falls behind loses
//! its oldest queued frame, never gets a torn one, never blocks the publisher); `--policy
//! lossless` makes `send` wait for a subscriber whose queue is full, within the frame's deadline
//! (`--send-timeout`) and the hub's abort flag. A subscriber that misses a deadline is given up
//! on for good ([`SendLimits::given_up`]): from then on a frame its queue has no room for passes
//! it by at once, so a stopped subscriber costs the stream one `--send-timeout`, not one per
//! frame, just as a stuck TCP client is dropped once.
//!
//! iceoryx2's ports are not `Send`: the node, the service and the publisher are created on the
//! output's own thread, and [`ShmOutput::start`](Output::start) waits until that thread reports
//! them ready (or why not), so a bad service or a second live publisher is an error before the
//! first frame is rendered.
//!
//! iceoryx2 installs its own SIGINT/SIGTERM handlers the first time it creates shared memory, and
//! they do not chain to handlers installed before them; [`claim_signals`] makes it install them
//! at once, so that handlers installed afterwards (glstream's) chain to iceoryx2's and keep
//! working. Its `ZeroCopySend` derive writes an `unsafe impl` for [`FrameHeader`]; the invariant
//! it asserts (a `#[repr(C)]` type of plain integers, no pointers, valid in any process) holds.

use std::any::Any;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, Scope};
use std::time::{Duration, Instant};

use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::{BackpressureAction, BackpressureInfo};
use iceoryx2::prelude::*;
use iceoryx2::sample_mut::SampleMut;
use iceoryx2::sample_mut_uninit::SampleMutUninit;
use iceoryx2::service::builder::publish_subscribe::{
    PublishSubscribeCreateError, PublishSubscribeOpenError,
};
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSub;
use thiserror::Error;

use super::hub::{Frame, Policy};
use super::output::{
    BindError, Deadline, Feed, FrameShape, Lending, Output, OutputConfig, OutputError, SendError,
    Sink, serve_sink,
};
use crate::format::Format;
use crate::gl::readback::{Lender, MAX_LOANS};

/// The iceoryx2 service flavour the publisher side uses: `ipc`'s shared memory, connections and
/// events (so subscribers of either flavour, and Python's, see one service), with ports that may
/// move between threads, so that the render loop can read a frame straight into a sample that
/// the output's thread sends (see [`ShmLender`]).
type Ipc = ipc_threadsafe::Service;

/// The per-frame user header of the shared-memory stream, `#[repr(C)]`, 48 bytes, aligned to 8,
/// native byte order. Its iceoryx2 type name is [`FRAME_HEADER_TYPE_NAME`]; a consumer's header
/// type must have that name, this size and this alignment (a Python `ctypes.Structure` with these
/// fields in this order and `type_name()` returning the name does).
// SAFETY: the `ZeroCopySend` derive expands to an `unsafe impl` asserting that the type may be
// shared between processes: it is `#[repr(C)]`, holds only integers (no pointers, references or
// handles that mean something in one process only) and every bit pattern is valid, which the
// derive also checks field by field at compile time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, ZeroCopySend)]
#[type_name("glstream::FrameHeader")]
#[repr(C)]
pub struct FrameHeader {
    /// The scene's frame index (restarts at 0 when a subscriber finds the stream idle).
    pub frame_index: u64,
    /// When the frame was rendered, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format, the `glstream` header's code: 1 rgba8, 2 bgra8, 3 rgb8, 4 gray8, 5 depth32f.
    pub format: u32,
    /// Bit 0 set: rows top-down (`--flip`); otherwise bottom-up (OpenGL order).
    pub flags: u32,
    /// Bytes per row; the payload is stride × height bytes.
    pub stride: u32,
    /// Zero.
    pub reserved: u32,
    /// The control request this frame answers (`--control`); 0 for none.
    pub request_id: u64,
}

/// The header type's name as iceoryx2 compares it when a subscriber opens the service.
pub const FRAME_HEADER_TYPE_NAME: &str = "glstream::FrameHeader";
/// Bytes of [`FrameHeader`].
pub const FRAME_HEADER_LEN: usize = 48;
/// [`FrameHeader::flags`] bit: rows are top-down.
pub const FLAG_TOP_DOWN: u32 = 1;

const _: () = assert!(std::mem::size_of::<FrameHeader>() == FRAME_HEADER_LEN);
const _: () = assert!(std::mem::align_of::<FrameHeader>() == 8);
const _: () = assert!(std::mem::offset_of!(FrameHeader, width) == 16);
const _: () = assert!(std::mem::offset_of!(FrameHeader, reserved) == 36);
const _: () = assert!(std::mem::offset_of!(FrameHeader, request_id) == 40);

impl FrameHeader {
    /// The header of `frame`, of a stream shaped `shape`.
    pub fn new(shape: &FrameShape, frame_index: u64, timestamp_ns: u64) -> Self {
        Self {
            frame_index,
            timestamp_ns,
            width: shape.width_px,
            height: shape.height_px,
            format: shape.format.code(),
            flags: if shape.top_down { FLAG_TOP_DOWN } else { 0 },
            stride: shape.width_px * shape.format.bytes_per_pixel(),
            reserved: 0,
            request_id: 0,
        }
    }

    /// Whether the rows are top-down.
    pub fn top_down(&self) -> bool {
        self.flags & FLAG_TOP_DOWN != 0
    }

    /// Payload bytes the header describes (stride × height).
    pub fn payload_len(&self) -> u64 {
        u64::from(self.stride) * u64::from(self.height)
    }

    /// Checks a header another process wrote against the payload it came with, and returns its
    /// pixel format: a known format, a size of at least 1×1, a stride of exactly width × bytes
    /// per pixel, and stride × height payload bytes. Every product is taken in u64 from u32
    /// factors, so none can wrap, in any build.
    pub fn check(&self, payload_bytes: usize) -> Result<Format, HeaderError> {
        let format = Format::from_code(self.format).ok_or(HeaderError::Format(self.format))?;
        let row_bytes = u64::from(self.width) * u64::from(format.bytes_per_pixel());
        if self.width == 0
            || self.height == 0
            || u64::from(self.stride) != row_bytes
            || self.payload_len() != payload_bytes as u64
        {
            return Err(HeaderError::Size {
                width: self.width,
                height: self.height,
                format: format.name(),
                stride: self.stride,
                payload_bytes,
            });
        }
        Ok(format)
    }
}

/// Why a received [`FrameHeader`] does not describe its payload.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// The format code is not one glstream sends.
    #[error("format code {0}")]
    Format(u32),
    /// Size, stride and payload length disagree (or the size is zero).
    #[error(
        "{width}x{height} {format} with stride {stride} does not describe {payload_bytes} payload \
         bytes"
    )]
    Size {
        /// The header's width.
        width: u32,
        /// The header's height.
        height: u32,
        /// The header's format.
        format: &'static str,
        /// The header's stride.
        stride: u32,
        /// The payload's length.
        payload_bytes: usize,
    },
}

/// The quality of service glstream creates the service with. Subscribers open it without asking
/// for any (iceoryx2 checks only what an opener asks for), so these may change between releases.
pub struct Qos {
    /// Subscribers the service admits.
    pub max_subscribers: usize,
    /// Frames queued per subscriber.
    pub buffer: usize,
    /// Samples a subscriber may hold at once.
    pub borrowed: usize,
}

/// See [`Qos`]. A publisher holds max_subscribers × (buffer + borrowed) + 1 samples of one frame
/// each in shared memory: 33 frames, 63 MB at 800×600 RGBA, 274 MB at 1920×1080.
pub const QOS: Qos = Qos {
    max_subscribers: 8,
    buffer: 2,
    borrowed: 2,
};

/// How long the output waits between looks at the subscriber count while nobody subscribes
/// (see [`serve`] for why it looks): a first subscriber's first frame comes at most this late.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// How often dead nodes (processes killed without cleaning up) are looked for and removed while
/// nobody is served.
const CLEANUP_EVERY: Duration = Duration::from_secs(1);
/// The same while frames are served: a sweep lists every iceoryx2 node on the machine and
/// allocates for each (about a thousand allocations), so it is rarer. A dead subscriber costs the
/// live ones nothing meanwhile; it only keeps a stream whose every subscriber died rendering for
/// up to this long.
const CLEANUP_WHILE_SERVING_EVERY: Duration = Duration::from_secs(5);
/// A lossless send blocked this long on a subscriber makes the output look for dead nodes (a
/// subscriber killed with a full queue would otherwise hold it until the deadline).
const DEAD_CHECK_AFTER: Duration = Duration::from_millis(100);
/// How long a subscriber without the frame event polls between empty receives.
pub(crate) const RECEIVE_POLL: Duration = Duration::from_micros(250);
/// How long a subscriber waits on the frame event before it looks whether the publisher is
/// still there (one killed outright notifies nobody).
pub(crate) const LIVENESS_CHECK: Duration = Duration::from_millis(100);
/// Subscribers given up on that a lossless output remembers (see [`SendLimits::given_up`]).
const GIVEN_UP_KEPT: usize = 64;

/// Why the shared-memory output or a subscriber could not do its job.
#[derive(Debug, Error)]
pub enum ShmError {
    /// The service name is not one iceoryx2 accepts.
    #[error("--shm {0:?}: not a valid iceoryx2 service name (1 to 255 printable characters)")]
    InvalidName(String),
    /// The iceoryx2 node could not be created.
    #[error("cannot create an iceoryx2 node ({0})")]
    Node(String),
    /// The service exists with settings this process cannot use.
    #[error("cannot open shared-memory service {service}: {reason}")]
    Service {
        /// The service name.
        service: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The publisher could not be created.
    #[error("cannot publish on shared-memory service {service}: {reason}")]
    Publisher {
        /// The service name.
        service: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// A subscriber could not be created or could not receive.
    #[error("cannot subscribe to shared-memory service {service}: {reason}")]
    Subscriber {
        /// The service name.
        service: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// No publisher made the service exist within the time given.
    #[error(
        "shared-memory service {service} does not exist (no glstream --shm {service} running?)"
    )]
    Missing {
        /// The service name.
        service: String,
    },
}

/// Checks that `name` is a valid iceoryx2 service name.
pub fn check_service_name(name: &str) -> Result<(), ShmError> {
    to_service_name(name).map(drop)
}

pub(crate) fn to_service_name(name: &str) -> Result<ServiceName, ShmError> {
    // iceoryx2 takes control characters; a name is printed in logs and on the ready line, where
    // a newline would split it and an escape would drive the terminal.
    if name.chars().any(char::is_control) {
        return Err(ShmError::InvalidName(name.to_owned()));
    }
    ServiceName::new(name).map_err(|_| ShmError::InvalidName(name.to_owned()))
}

/// An iceoryx2 error's `Debug` name (`DoesNotSupportRequestedAmountOfSubscribers`) as words
/// ("does not support requested amount of subscribers"), for the errors without a message of
/// our own: a user reads one line, not a Rust identifier.
pub(crate) fn words(error: &impl std::fmt::Debug) -> String {
    let debug = format!("{error:?}");
    let mut out = String::with_capacity(debug.len() + 8);
    let mut previous: Option<char> = None;
    for c in debug.chars() {
        if c.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
        previous = Some(c);
    }
    out.replace('(', ": ").replace(')', "")
}

/// Makes iceoryx2 install its SIGINT/SIGTERM handlers now, before the caller installs its own.
/// iceoryx2 installs them (without chaining to what was there) the first time it zeroes new
/// shared memory; installed first, they are the ones a later `signal-hook` handler chains to, so
/// both see the signal. Its log level is set here too: from `-vv` on iceoryx2 logs at debug,
/// from `-v` at info, otherwise only its errors (its warning that no config file was found would
/// otherwise print at every start).
pub fn claim_signals() {
    set_log_level(match log::max_level() {
        log::LevelFilter::Trace => LogLevel::Debug,
        log::LevelFilter::Debug => LogLevel::Info,
        _ => LogLevel::Error,
    });
    let _ = iceoryx2_bb_posix::signal::SignalHandler::call_and_fetch(|| ());
}

/// Restores the default action (end the process) of SIGINT and SIGTERM after [`claim_signals`],
/// for commands without signal handling of their own (`recv`, `bench`): iceoryx2's handlers only
/// record a signal.
pub fn keep_default_signals() -> io::Result<()> {
    let always = Arc::new(AtomicBool::new(true));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_default(signal, Arc::clone(&always))?;
    }
    Ok(())
}

/// The `--shm SERVICE` output, not yet started.
pub struct ShmOutput {
    service: String,
    readback: ShmReadback,
}

/// `--shm-readback`: how frames get into the shared-memory samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ShmReadback {
    /// `direct` where it saves a copy: a software rasterizer (llvmpipe), with shared memory the
    /// stream's only output, for frames of 3 MiB and more; otherwise `pbo`.
    #[default]
    Auto,
    /// Through the PBO ring, each frame then copied from the mapping into its sample.
    Pbo,
    /// `glReadPixels` straight into each frame's sample, synchronously (on a GPU this stalls the
    /// pipeline; for measuring), whenever shared memory is the stream's only output.
    Direct,
}

/// The `--shm SERVICE` output as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmConfig {
    /// The iceoryx2 service to publish on.
    pub service: String,
    /// How frames get into the samples.
    pub readback: ShmReadback,
}

impl<F: Frame> OutputConfig<F> for ShmConfig {
    fn carries_frame_index(&self) -> bool {
        true
    }

    fn bind(&self) -> Result<Box<dyn Output<F>>, BindError> {
        Ok(Box::new(bind(&self.service, self.readback)?))
    }
}

/// Checks `service` and prepares its output; the service itself is opened when the output
/// starts, on its own thread. Call before installing signal handlers (see [`claim_signals`]).
pub fn bind(service: &str, readback: ShmReadback) -> Result<ShmOutput, ShmError> {
    check_service_name(service)?;
    claim_signals();
    Ok(ShmOutput {
        service: service.to_owned(),
        readback,
    })
}

/// The event that accompanies a glstream shared-memory stream: an iceoryx2 event service of the
/// same name, notified after every frame sent and once more when the publisher leaves, so that
/// a subscriber waits on it instead of polling. It is an addition to the contract, not a part a
/// consumer needs: one that does not listen polls as before.
pub(crate) struct FrameEvent;

impl FrameEvent {
    pub(crate) fn open<S: iceoryx2::service::Service>(
        node: &Node<S>,
        name: &ServiceName,
    ) -> Result<iceoryx2::service::port_factory::event::PortFactory<S>, String> {
        node.service_builder(name)
            .event()
            .open_or_create()
            .map_err(|e| words(&e))
    }
}

/// A node, the service and its one publisher, all on the output's thread.
struct Publishing {
    node: Node<Ipc>,
    service: PubSub<Ipc, [u8], FrameHeader>,
    /// Shared with the [`ShmLender`], if the render loop reads into its samples.
    publisher: Arc<Publisher<Ipc, [u8], FrameHeader>>,
    limits: Arc<SendLimits>,
    /// Wakes subscribers that wait on the service's event (see [`FrameEvent`]); `None` when the
    /// event service could not be opened, and then they find frames by polling.
    notifier: Option<Notifier<Ipc>>,
}

/// What the backpressure handler (a `'static` callback) needs to know about the current send.
struct SendLimits {
    origin: Instant,
    /// The current frame's deadline, nanoseconds after `origin`.
    deadline_ns: AtomicU64,
    /// The hub's abort flag.
    aborted: Arc<AtomicBool>,
    /// Subscribers that missed a frame at its deadline.
    missed: AtomicU64,
    /// The receiver port ids of subscribers that missed a deadline: never waited for again
    /// (newest last; at most [`GIVEN_UP_KEPT`], the oldest forgotten first, which costs a
    /// forgotten one that is still stuck one more deadline).
    given_up: Mutex<Vec<u128>>,
    /// When dead nodes were last looked for, nanoseconds after `origin`.
    swept_ns: AtomicU64,
}

impl SendLimits {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// What a lossless send does about a subscriber whose queue is full.
    fn on_backpressure(&self, info: &BackpressureInfo) -> BackpressureAction {
        if self.aborted.load(Ordering::Relaxed) {
            return BackpressureAction::DiscardDataAndFail;
        }
        let mut given_up = self.given_up.lock().unwrap_or_else(PoisonError::into_inner);
        if given_up.contains(&info.receiver_port_id) {
            return BackpressureAction::DiscardData;
        }
        let now = self.now_ns();
        if now >= self.deadline_ns.load(Ordering::Relaxed) {
            self.missed.fetch_add(1, Ordering::Relaxed);
            if given_up.len() == GIVEN_UP_KEPT {
                given_up.remove(0);
            }
            given_up.push(info.receiver_port_id);
            return BackpressureAction::DiscardData;
        }
        drop(given_up);
        // A subscriber killed with a full queue is only noticed by a sweep for dead nodes, which
        // disconnects it and so ends this wait without costing a live subscriber any frame.
        let swept = self.swept_ns.load(Ordering::Relaxed);
        if info.elapsed_time >= DEAD_CHECK_AFTER
            && now.saturating_sub(swept) >= DEAD_CHECK_AFTER.as_nanos() as u64
        {
            self.swept_ns.store(now, Ordering::Relaxed);
            crate::alloc_count::housekeeping(remove_dead_nodes);
        }
        BackpressureAction::Retry
    }
}

/// Removes what processes that died without cleaning up left behind (their subscribers stay
/// counted, and connected, until then); returns how many were removed.
fn remove_dead_nodes() -> u64 {
    let mut removed = 0;
    let _ = Node::<ipc::Service>::list(Config::global_config(), |state| {
        if let NodeState::Dead(dead) = state
            && dead.blocking_remove_stale_resources(Duration::ZERO).is_ok()
        {
            removed += 1;
        }
        CallbackProgression::Continue
    });
    if removed > 0 {
        log::info!("removed {removed} dead iceoryx2 node(s)");
    }
    removed
}

impl Publishing {
    /// Creates the node (which removes dead nodes, so a producer killed with SIGKILL does not
    /// block its successor), opens or creates the service and creates the publisher.
    fn open<F: Frame>(
        service_name: &str,
        feed: &Feed<F>,
        policy: Policy,
    ) -> Result<Self, ShmError> {
        let name = to_service_name(service_name)?;
        let node = NodeBuilder::new()
            .name(&NodeName::new("glstream").map_err(|e| ShmError::Node(words(&e)))?)
            // glstream handles signals itself; see claim_signals.
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<Ipc>()
            .map_err(|e| ShmError::Node(words(&e)))?;
        remove_dead_nodes();
        let lossless = policy == Policy::Lossless;
        let max_subscribers = QOS.max_subscribers.min(feed.max_clients);
        let service_error = |reason| ShmError::Service {
            service: service_name.to_owned(),
            reason,
        };
        // Opened with only the types (so that any glstream's settings open) and then checked,
        // or else created with glstream's; a few tries, for a service that appears or goes
        // between the two.
        let mut tries = 0;
        let service = loop {
            tries += 1;
            match node
                .service_builder(&name)
                .publish_subscribe::<[u8]>()
                .user_header::<FrameHeader>()
                .open()
            {
                Ok(service) => break service,
                Err(PublishSubscribeOpenError::DoesNotExist) => {}
                Err(e) if tries < 3 && retry_open(&e) => {
                    // At start-up only: another process is creating or removing the service,
                    // and iceoryx2 has no event for when it is done.
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return Err(service_error(open_reason(&e))),
            }
            match node
                .service_builder(&name)
                .publish_subscribe::<[u8]>()
                .user_header::<FrameHeader>()
                .max_publishers(1)
                .max_subscribers(max_subscribers)
                .max_nodes(max_subscribers + 2)
                .history_size(0)
                .subscriber_max_buffer_size(QOS.buffer)
                .subscriber_max_borrowed_samples(QOS.borrowed)
                .enable_safe_overflow(!lossless)
                .create()
            {
                Ok(service) => break service,
                Err(
                    PublishSubscribeCreateError::AlreadyExists
                    | PublishSubscribeCreateError::IsBeingCreatedByAnotherInstance,
                    // At start-up only, as above.
                ) if tries < 3 => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(service_error(words(&e))),
            }
        };
        glstream_made(&service, lossless).map_err(service_error)?;
        let limits = Arc::new(SendLimits {
            origin: Instant::now(),
            deadline_ns: AtomicU64::new(u64::MAX),
            aborted: feed.hub.abort_flag(),
            missed: AtomicU64::new(0),
            given_up: Mutex::new(Vec::with_capacity(GIVEN_UP_KEPT)),
            swept_ns: AtomicU64::new(0),
        });
        let handler_limits = Arc::clone(&limits);
        let frame_bytes = feed
            .shape
            .format
            .frame_bytes(feed.shape.width_px, feed.shape.height_px);
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(frame_bytes as usize)
            // Every frame of a stream has the same size.
            .allocation_strategy(AllocationStrategy::Static)
            // One for the copy from a mapped PBO; the render loop's loans when it reads into
            // samples (`ShmLender`).
            .max_loaned_samples(MAX_LOANS)
            // Consulted only without safe overflow, that is for lossless streams.
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .set_backpressure_handler(move |info: &BackpressureInfo| {
                handler_limits.on_backpressure(info)
            })
            .create()
            .map_err(|e| ShmError::Publisher {
                service: service_name.to_owned(),
                reason: match e {
                    iceoryx2::port::publisher::PublisherCreateError::ExceedsMaxSupportedPublishers => {
                        "another glstream is publishing on it (a service has one publisher)".into()
                    }
                    other => words(&other),
                },
            })?;
        let notifier = FrameEvent::open(&node, &name)
            .and_then(|event| event.notifier_builder().create().map_err(|e| words(&e)))
            .map_err(|e| log::warn!("shm: no frame event ({e}); subscribers will poll"))
            .ok();
        Ok(Self {
            node,
            service,
            publisher: Arc::new(publisher),
            limits,
            notifier,
        })
    }

    /// Wakes the subscribers waiting for a frame (or for the end of the stream).
    fn notify(&self) {
        if let Some(notifier) = &self.notifier {
            let _ = notifier.notify();
        }
    }

    fn subscribers(&self) -> usize {
        self.service.dynamic_config().number_of_subscribers()
    }
}

/// Whether opening the service may work if tried again (it is being removed: then it can be
/// created anew).
fn retry_open(e: &PublishSubscribeOpenError) -> bool {
    matches!(e, PublishSubscribeOpenError::IsMarkedForDestruction)
}

/// Why opening the service failed, in words.
pub(crate) fn open_reason(e: &PublishSubscribeOpenError) -> String {
    use PublishSubscribeOpenError as Open;
    match e {
        Open::IncompatibleTypes => {
            "it exists with other payload or header types (another program made it)".into()
        }
        Open::ExceedsMaxNumberOfNodes => "it has as many users as it admits".into(),
        Open::InsufficientPermissions => "no permission (another user's service?)".into(),
        other => words(other),
    }
}

/// Checks that an existing service has the settings a glstream creates it with, so that no
/// other program's service (iceoryx2's defaults admit two publishers) is published on: `Err`
/// says what differs.
fn glstream_made(service: &PubSub<Ipc, [u8], FrameHeader>, lossless: bool) -> Result<(), String> {
    let config = service.static_config();
    if config.has_safe_overflow() == lossless {
        return Err(format!(
            "it exists, held open by its subscribers, with the other policy (give --policy {})",
            if lossless { "latest" } else { "lossless" }
        ));
    }
    let subscribers = config.max_subscribers();
    let ours = config.max_publishers() == 1
        && (1..=QOS.max_subscribers).contains(&subscribers)
        && config.max_nodes() == subscribers + 2
        && config.history_size() == 0
        && config.subscriber_max_buffer_size() == QOS.buffer
        && config.subscriber_max_borrowed_samples() == QOS.borrowed;
    if ours {
        return Ok(());
    }
    Err(format!(
        "another program created it with settings glstream does not use (up to {} publishers, \
         {} subscribers, {} nodes, history {}, queue {}, {} borrowed samples); stop it, or pick \
         another name",
        config.max_publishers(),
        subscribers,
        config.max_nodes(),
        config.history_size(),
        config.subscriber_max_buffer_size(),
        config.subscriber_max_borrowed_samples()
    ))
}

impl<F: Frame> Output<F> for ShmOutput {
    fn announcement(&self) -> Option<String> {
        Some(format!("publishing on shm:{}", self.service))
    }

    fn start<'scope, 'env>(
        self: Box<Self>,
        scope: &'scope Scope<'scope, 'env>,
        feed: &'env Feed<F>,
        policy: Policy,
    ) -> Result<(), OutputError> {
        let (ready, setup) = mpsc::sync_channel::<Result<Arc<ShmLender>, ShmError>>(1);
        let service = self.service.clone();
        thread::Builder::new()
            .name("shm".into())
            .spawn_scoped(scope, move || {
                let publishing = match Publishing::open(&service, feed, policy) {
                    Ok(publishing) => {
                        let lender = ShmLender {
                            publisher: Arc::clone(&publishing.publisher),
                        };
                        let _ = ready.send(Ok(Arc::new(lender)));
                        publishing
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                serve(feed, &publishing, &service, policy);
            })
            .map_err(|source| OutputError::Thread {
                what: "shm".into(),
                source,
            })?;
        let what = "shm".to_owned();
        match setup.recv() {
            Ok(Ok(lender)) => {
                log::info!("publishing on iceoryx2 service {}", self.service);
                if self.readback != ShmReadback::Pbo {
                    feed.lend(Lending {
                        lender,
                        always: self.readback == ShmReadback::Direct,
                        what: format!("shm:{}", self.service),
                    });
                }
                Ok(())
            }
            Ok(Err(e)) => Err(OutputError::Setup {
                what,
                source: Box::new(e),
            }),
            Err(_) => Err(OutputError::Setup {
                what,
                source: "its thread ended before it was ready".into(),
            }),
        }
    }
}

/// The output's thread: waits for subscribers, registers with the hub while there are any and
/// feeds them through [`serve_sink`], until the stream is finished.
fn serve<F: Frame>(feed: &Feed<F>, publishing: &Publishing, service: &str, policy: Policy) {
    let name = format!("shm:{service} subscribers");
    let mut cleaned = Instant::now();
    while !feed.hub.is_finished() {
        if cleaned.elapsed() >= CLEANUP_EVERY {
            cleaned = Instant::now();
            crate::alloc_count::housekeeping(|| publishing.node.try_cleanup_dead_nodes());
        }
        if publishing.subscribers() == 0 {
            // Idle, not a frame path (no subscriber: nothing is published). A timed look, not
            // an event, because iceoryx2 0.10 raises none when a publish-subscribe subscriber
            // connects: its lifecycle events (`notifier_created_event` and the like) are for an
            // event service's notifiers only, and a third-party subscriber (a Python one) need
            // not open the frame event at all. The look is one read of the service's dynamic
            // config in shared memory; the wait is on the hub, so the end of the stream ends it
            // at once instead of after a slice.
            feed.hub.wait_finished(IDLE_POLL);
            continue;
        }
        let id = feed.register("shm", policy);
        log::debug!("{name}: {} subscribed", publishing.subscribers());
        let sink = ShmSink {
            publishing,
            cleaned: Instant::now(),
        };
        serve_sink(feed, id, sink, &name);
    }
}

/// Lends the render loop samples of the service to read frames straight into (see
/// [`crate::gl::readback::LentRing`]), so that the driver's copy is a frame's only one; the
/// [`ShmSink`] takes each filled sample from its frame and sends it. What the [`Lender`]
/// promises holds: a sample's memory is in the publisher's data segment, which stays mapped
/// where it is while the publisher lives (this keeps it alive), sent or not; iceoryx2 lends a
/// chunk again only once it was sent and every subscriber let go of it, or returned unsent; and
/// the sink writes the header only, never the payload.
struct ShmLender {
    publisher: Arc<Publisher<Ipc, [u8], FrameHeader>>,
}

/// What a [`ShmLender`]'s holder holds.
enum Loan {
    /// Nothing.
    Empty,
    /// A sample being read into.
    Loaned(SampleMutUninit<Ipc, [MaybeUninit<u8>], FrameHeader>),
    /// A frame, ready to send.
    Filled(SampleMut<Ipc, [u8], FrameHeader>),
}

impl Loan {
    /// The filled sample, taken (to be sent); `None` if there is none.
    fn take_filled(&mut self) -> Option<SampleMut<Ipc, [u8], FrameHeader>> {
        match std::mem::replace(self, Loan::Empty) {
            Loan::Filled(sample) => Some(sample),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// The holder a [`ShmLender`] made, or the error of a caller that mixed lenders up.
fn loan(holder: &mut (dyn Any + Send)) -> Result<&mut Loan, String> {
    holder
        .downcast_mut::<Loan>()
        .ok_or_else(|| "a holder the shared-memory output did not make".to_owned())
}

impl Lender for ShmLender {
    fn holder(&self) -> Box<dyn Any + Send> {
        Box::new(Loan::Empty)
    }

    fn lend<'h>(
        &self,
        holder: &'h mut (dyn Any + Send),
        len: usize,
    ) -> Result<&'h mut [MaybeUninit<u8>], String> {
        let loan = loan(holder)?;
        // Returned first, so that it counts against no limit.
        *loan = Loan::Empty;
        let sample = self
            .publisher
            .loan_slice_uninit(len)
            .map_err(|e| words(&e))?;
        *loan = Loan::Loaned(sample);
        match loan {
            Loan::Loaned(sample) => Ok(sample.payload_mut()),
            _ => unreachable!("just stored"),
        }
    }

    unsafe fn filled(&self, holder: &mut (dyn Any + Send)) {
        let Ok(loan) = loan(holder) else { return };
        if let Loan::Loaned(sample) = std::mem::replace(loan, Loan::Empty) {
            // SAFETY: the caller wrote every byte of this loan's payload (the trait's contract).
            *loan = Loan::Filled(unsafe { sample.assume_init() });
        }
    }

    fn clear(&self, holder: &mut (dyn Any + Send)) {
        if let Ok(loan) = loan(holder) {
            *loan = Loan::Empty;
        }
    }
}

/// The [`Sink`] for all subscribers of the service: each frame is one loaned sample.
struct ShmSink<'a> {
    publishing: &'a Publishing,
    cleaned: Instant,
}

impl Sink for ShmSink<'_> {
    fn send<F: Frame>(
        &mut self,
        frame: &F,
        shape: &FrameShape,
        deadline: &Deadline<'_>,
    ) -> Result<u64, SendError> {
        let publishing = self.publishing;
        let payload = frame.bytes();
        let total = (FRAME_HEADER_LEN + payload.len()) as u64;
        if (deadline.aborted)() {
            return Err(SendError::Aborted { sent: 0, total });
        }
        // A subscriber killed with SIGKILL stays counted until its node is removed.
        if self.cleaned.elapsed() >= CLEANUP_WHILE_SERVING_EVERY {
            self.cleaned = Instant::now();
            crate::alloc_count::housekeeping(|| publishing.node.try_cleanup_dead_nodes());
        }
        if publishing.subscribers() == 0 {
            return Err(SendError::HungUp(io::Error::new(
                io::ErrorKind::NotConnected,
                "every subscriber left",
            )));
        }
        let limits = &publishing.limits;
        let deadline_ns = deadline
            .at
            .saturating_duration_since(limits.origin)
            .as_nanos() as u64;
        limits.deadline_ns.store(deadline_ns, Ordering::Relaxed);
        let missed = limits.missed.load(Ordering::Relaxed);
        // A frame the render loop read straight into a sample is sent as it is; any other is
        // copied once, from the mapped PBO into shared memory.
        let mut lent = None;
        frame.with_loan(&mut |holder| {
            if let Some(loan) = holder.downcast_mut::<Loan>() {
                lent = loan.take_filled();
            }
        });
        let mut sample = match lent {
            Some(sample) => sample,
            None => publishing
                .publisher
                .loan_slice_uninit(payload.len())
                .map_err(|e| {
                    SendError::Failed(io::Error::other(format!("cannot loan: {}", words(&e))))
                })?
                .write_from_slice(payload),
        };
        *sample.user_header_mut() = FrameHeader {
            request_id: frame.request_id(),
            ..FrameHeader::new(shape, frame.frame_index(), frame.timestamp_ns())
        };
        match sample.send() {
            Ok(_) => publishing.notify(),
            Err(_) if (deadline.aborted)() => return Err(SendError::Aborted { sent: 0, total }),
            Err(e) => return Err(SendError::Failed(io::Error::other(words(&e)))),
        }
        let missed_now = limits.missed.load(Ordering::Relaxed) - missed;
        if missed_now > 0 {
            log::info!(
                "shm: {missed_now} subscriber(s) did not make room for frame {} within the send \
                 timeout and missed it; they are no longer waited for (from now on they miss \
                 every frame their queue has no room for)",
                frame.frame_index()
            );
        }
        Ok(total)
    }

    fn close(&mut self, _clean: bool, _deadline: &Deadline<'_>) {
        // Frames already sent stay in the subscribers' queues, readable after the publisher is
        // gone: nothing to flush.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn the_header_layout_is_the_documented_one() {
        let offsets = [
            offset_of!(FrameHeader, frame_index),
            offset_of!(FrameHeader, timestamp_ns),
            offset_of!(FrameHeader, width),
            offset_of!(FrameHeader, height),
            offset_of!(FrameHeader, format),
            offset_of!(FrameHeader, flags),
            offset_of!(FrameHeader, stride),
            offset_of!(FrameHeader, reserved),
            offset_of!(FrameHeader, request_id),
        ];
        assert_eq!(offsets, [0, 8, 16, 20, 24, 28, 32, 36, 40]);
    }

    #[test]
    fn the_header_describes_the_frame() {
        let shape = FrameShape {
            width_px: 98,
            height_px: 66,
            format: Format::Rgb8,
            top_down: true,
        };
        let header = FrameHeader::new(&shape, 7, 42);
        assert_eq!(header.stride, 98 * 3);
        assert_eq!(header.payload_len(), 98 * 3 * 66);
        assert_eq!(header.format, 3);
        assert!(header.top_down());
        assert_eq!(Format::from_code(header.format), Some(Format::Rgb8));
    }

    #[test]
    fn service_names_are_checked() {
        assert!(check_service_name("glstream/frames").is_ok());
        assert!(check_service_name("").is_err());
        assert!(check_service_name(&"x".repeat(300)).is_err());
        for name in [
            "a\tb",
            "frames\nlistening on 1.2.3.4:5",
            "\u{1b}[31mred",
            "a\u{7f}",
            "a\u{85}b",
        ] {
            let error = check_service_name(name).unwrap_err().to_string();
            assert!(!error.contains(['\n', '\t', '\u{1b}']), "{error}");
        }
    }

    #[test]
    fn headers_that_do_not_describe_their_payload_are_refused_without_wrapping() {
        let good = FrameHeader {
            width: 98,
            height: 66,
            format: 3,
            stride: 98 * 3,
            ..FrameHeader::default()
        };
        assert_eq!(good.check(98 * 3 * 66), Ok(Format::Rgb8));
        let bad = |change: fn(&mut FrameHeader), payload_bytes: usize| {
            let mut header = good;
            change(&mut header);
            header.check(payload_bytes).unwrap_err()
        };
        // width × 4 is 2^32: wrapped to 0 in u32, it would match a stride of 0 and an empty
        // payload.
        let wrapped = bad(
            |h| {
                h.width = 1 << 30;
                h.height = 32;
                h.format = 1;
                h.stride = 0;
            },
            0,
        );
        assert!(
            wrapped.to_string().contains("1073741824x32 rgba8"),
            "{wrapped}"
        );
        // stride × height past u32, the payload as if it wrapped.
        bad(
            |h| {
                h.width = 1 << 28;
                h.stride = 1 << 30;
                h.height = 4;
                h.format = 1;
            },
            0,
        );
        bad(|h| h.width = 0, 0);
        bad(|h| h.height = 0, 0);
        bad(|h| h.stride += 1, 98 * 3 * 66);
        assert!(good.check(98 * 3 * 66 - 1).is_err());
        assert_eq!(bad(|h| h.format = 9, 98 * 3 * 66), HeaderError::Format(9));
    }

    #[test]
    fn iceoryx2_error_names_read_as_words() {
        assert_eq!(
            words(&PublishSubscribeOpenError::DoesNotSupportRequestedAmountOfSubscribers),
            "does not support requested amount of subscribers"
        );
    }
}
