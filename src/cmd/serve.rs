//! The main job: render, read back, publish to the outputs.
//!
//! One frame's life: the scene draws frame N into the FBO; the ring picks the PBO it goes into
//! and, if an earlier frame still pinned there is published, the hub withdraws it; `glReadPixels`
//! copies into that PBO and a fence follows; once k frames are in flight the oldest is waited on,
//! mapped, and published to the outputs, which send it from the mapping. At the end the ring
//! drains so the last frames go out too. The GL context never leaves this thread; the outputs
//! never call GL.
//!
//! The outputs run in a thread scope inside the renderer's borrow of the context, and every
//! frame they hold borrows that context: on every way out of [`stream`] — the end, a signal, or
//! an error returned with `?` — the scope's [`Closing`] guard shuts the hub, gives consumers a
//! short grace to finish the frame they are on, then makes the rest give up, and the scope joins
//! every output thread before the context can go.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use super::control::{ControlSocket, Link, Pending};
use crate::cli::ServeConfig;
use crate::gl::readback::{FrameLease, FrameMeta};
use crate::render::{self, Renderer};
use crate::stream::hub::{Frame, Hub, Policy};
use crate::stream::output::{Feed, Output, Stats};
use crate::stream::plural;
use crate::stream::stop::StopFlag;

impl Frame for FrameLease<'_> {
    fn bytes(&self) -> &[u8] {
        FrameLease::bytes(self)
    }

    fn sequence(&self) -> u64 {
        self.meta().sequence
    }

    fn frame_index(&self) -> u64 {
        self.meta().frame_index
    }

    fn timestamp_ns(&self) -> u64 {
        self.meta().timestamp_ns
    }

    fn request_id(&self) -> u64 {
        self.meta().request_id
    }

    fn with_loan(&self, take: &mut dyn FnMut(&mut (dyn std::any::Any + Send))) -> bool {
        FrameLease::with_loan(self, take)
    }
}

/// Every output of a stream, as the render loop sees them.
pub type Outputs<'ctx> = Vec<Box<dyn Output<FrameLease<'ctx>>>>;

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Keeps the loop at `--fps` without drifting: deadlines advance by the interval, and a loop that
/// falls more than one interval behind starts afresh rather than racing to catch up.
struct Pacer {
    interval: Option<Duration>,
    deadline: Instant,
}

impl Pacer {
    fn new(interval: Option<Duration>) -> Self {
        Self {
            interval,
            deadline: Instant::now(),
        }
    }

    fn reset(&mut self) {
        self.deadline = Instant::now();
    }

    /// Waits until the next deadline on the hub, so that a stop (a signal, whose relay
    /// interrupts the hub, or an output ending the stream) ends the wait at once, even at a very
    /// low --fps.
    fn wait<F: Frame>(&mut self, hub: &Hub<F>, stopped: &dyn Fn() -> bool) {
        let Some(interval) = self.interval else {
            return;
        };
        self.deadline += interval;
        let now = Instant::now();
        if self.deadline > now {
            hub.wait_until(self.deadline, stopped);
        } else if now - self.deadline > interval {
            self.deadline = now;
        }
    }
}

/// How long a shutdown waits for consumers to finish the frame they are on before they are made
/// to give up.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(700);

/// After a signal, how long the process may take to exit before the signal thread ends it (a
/// frame that takes longer to draw than that cannot be interrupted any other way).
const SIGNAL_WATCHDOG: Duration = Duration::from_millis(950);

/// The hidden test hook: `GLSTREAM_TEST_FAIL_AT_FRAME=N` makes the loop fail at frame N, so the
/// tests can show that an error mid-stream is one clean line with outputs still connected.
const FAIL_AT_ENV: &str = "GLSTREAM_TEST_FAIL_AT_FRAME";

/// Points in one pass of the render loop, for observers that time the stages (`bench`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A frame is about to be drawn.
    Start,
    /// Its draw calls are issued.
    Rendered,
    /// It is rasterized (marked where the loop waits for that apart from drawing: reading
    /// into lent memory).
    Rasterized,
    /// Its PBO is free (an earlier frame withdrawn from the outputs, or waited for).
    Retracted,
    /// `glReadPixels` into the PBO and its fence are issued.
    Submitted,
    /// The oldest frame in flight is mapped.
    Mapped,
    /// It is handed to the outputs.
    Published,
}

/// Where a streaming run stands after a frame.
pub struct Progress<'a> {
    /// Frames rendered so far.
    pub frames: u64,
    /// Delivery counters.
    pub stats: &'a Stats,
    /// Consumers connected now (takes the hub's lock: call it rarely).
    pub clients: &'a dyn Fn() -> usize,
}

impl Progress<'_> {
    /// Time sinks have spent sending so far, summed over sinks.
    pub fn send(&self) -> Duration {
        Duration::from_nanos(self.stats.send_ns.load(Ordering::Acquire))
    }
}

/// Watches a stream from the GL thread. The production loop's observer logs once a second; the
/// bench's times the stages. Nothing here may allocate per frame if the loop is to stay
/// allocation-free.
pub trait Observer {
    /// The outputs are serving; `announcements` are their `listening on ...` lines.
    fn ready(&mut self, announcements: &[String]) -> Result<()>;
    /// A point in the frame's pass was reached.
    fn mark(&mut self, _mark: Mark) {}
    /// A frame went through the loop.
    fn frame(&mut self, progress: &Progress<'_>);
}

/// What one streaming run did.
#[derive(Debug, Clone, Copy)]
pub struct StreamReport {
    /// Frames rendered.
    pub frames: u64,
    /// Time spent rendering for consumers (idle time excluded), until the last was delivered.
    pub served: Duration,
    /// Bytes delivered to all consumers.
    pub bytes_sent: u64,
    /// PBOs the ring allocated beyond k.
    pub spares: usize,
}

/// The observer of a served stream: prints the announcements, logs fps, MB/s and clients once a
/// second, and keeps the frame count and the render and readback times in the stream's
/// [`Stats`] (for the HTTP output's /metrics and /healthz).
struct StatsLog {
    started: Instant,
    frames: u64,
    bytes: u64,
    /// When the pass began, its draw calls were issued, and its PBO was free.
    marks: [Option<Instant>; 3],
    /// This pass's render and readback times, recorded at the end of the pass.
    render: Option<Duration>,
    readback: Option<Duration>,
}

impl StatsLog {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            frames: 0,
            bytes: 0,
            marks: [None; 3],
            render: None,
            readback: None,
        }
    }
}

impl Observer for StatsLog {
    fn ready(&mut self, announcements: &[String]) -> Result<()> {
        // The lines on stdout: scripts and tests read the port from them when --port is 0. With
        // --stdout, fd 1 was pointed at stderr when the stream took the real stdout (see
        // `socket::bind`), so they land there, never among the frames. A closed or full stdout
        // loses them but must not stop the server.
        let mut stdout = std::io::stdout().lock();
        for line in announcements {
            if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
                log::warn!("cannot print \"{line}\" on standard output: {e}");
            }
        }
        Ok(())
    }

    fn mark(&mut self, mark: Mark) {
        let now = Instant::now();
        match mark {
            Mark::Start => self.marks = [Some(now), None, None],
            Mark::Rendered => {
                self.marks[1] = Some(now);
                self.render = self.marks[0].map(|start| now - start);
            }
            // Where the loop waits for the rasterizer apart, rendering lasts until it is done.
            Mark::Rasterized => self.render = self.marks[0].map(|start| now - start),
            Mark::Retracted => self.marks[2] = Some(now),
            // Readback: glReadPixels and the fence, then (once the ring is full) the wait for the
            // oldest frame and its map.
            Mark::Submitted | Mark::Mapped => {
                self.readback = self.marks[2].map(|free| now - free);
            }
            Mark::Published => {}
        }
    }

    fn frame(&mut self, progress: &Progress<'_>) {
        let stats = progress.stats;
        stats
            .frames_rendered
            .store(progress.frames, Ordering::Relaxed);
        stats.last_frame_ns.store(unix_ns(), Ordering::Relaxed);
        if let Some(render) = self.render.take() {
            stats.stages.render.observe(render);
        }
        if let Some(readback) = self.readback.take() {
            stats.stages.readback.observe(readback);
        }
        self.frames += 1;
        let elapsed = self.started.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let bytes = progress.stats.bytes_sent.load(Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        log::info!(
            "{:.1} fps, {:.1} MB/s, {}",
            self.frames as f64 / seconds,
            bytes.saturating_sub(self.bytes) as f64 / seconds / 1e6,
            plural((progress.clients)(), "client")
        );
        self.started = Instant::now();
        self.frames = 0;
        self.bytes = bytes;
    }
}

/// Signals that stop a served stream cleanly, as SIGTERM does: the frames in flight go out, the
/// socket files go, and the exit status is 0. SIGHUP is a terminal or a supervisor going away,
/// SIGQUIT a user's Ctrl-\\; neither should skip the clean path.
pub const STOP_SIGNALS: [i32; 4] = [SIGHUP, SIGINT, SIGQUIT, SIGTERM];

/// Signals whose default action would end the process but which mean nothing to glstream: they
/// are logged and ignored, so a stray `kill -USR1` does not tear a stream down uncleanly.
pub const IGNORED_SIGNALS: [i32; 2] = [SIGUSR1, SIGUSR2];

/// The signal's name for log lines (`SIGHUP`), or its number.
fn signal_name(signal: i32) -> String {
    signal_hook::low_level::signal_name(signal).map_or_else(|| signal.to_string(), str::to_owned)
}

/// Installs the signal handling for a served stream: the first of [`STOP_SIGNALS`] sets `stop`;
/// a second exits at once; and if the process is still running [`SIGNAL_WATCHDOG`] after the
/// first (a draw call that takes seconds cannot be interrupted), it is ended there with the
/// status a signal stop documents (0). [`IGNORED_SIGNALS`] are logged and ignored. Dropping the
/// returned guard disarms the watchdog.
fn watch_signals(stop: &Arc<StopFlag>) -> Result<SignalWatch> {
    let mut signals = Signals::new(STOP_SIGNALS.iter().chain(&IGNORED_SIGNALS))
        .context("cannot install signal handlers")?;
    let done = Arc::new(StopFlag::new());
    let (stop, finished) = (Arc::clone(stop), Arc::clone(&done));
    let ignore = |signal: i32| {
        let ignored = IGNORED_SIGNALS.contains(&signal);
        if ignored {
            log::info!(
                "{} has no meaning to glstream; ignored",
                signal_name(signal)
            );
        }
        ignored
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stops = signals.forever().filter(|&s| !ignore(s));
            let Some(signal) = stops.next() else {
                return;
            };
            log::info!("{} received: stopping", signal_name(signal));
            stop.stop();
            // The watchdog: a deadline, not a poll; the stream's end (the guard's drop) wakes
            // it at once.
            std::thread::spawn(move || {
                if !finished.wait_until(Instant::now() + SIGNAL_WATCHDOG) {
                    log::warn!(
                        "still busy {} ms after the signal (a frame that takes that long to \
                         draw cannot be interrupted); exiting now",
                        SIGNAL_WATCHDOG.as_millis()
                    );
                    std::process::exit(0);
                }
            });
            if let Some(signal) = stops.next() {
                log::warn!("second signal {}: exiting at once", signal_name(signal));
                std::process::exit(1);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(SignalWatch { done })
}

/// Disarms the signal watchdog when the stream is over.
struct SignalWatch {
    done: Arc<StopFlag>,
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.done.stop();
    }
}

/// Runs the server until `--frames` is reached, a signal arrives, or (stdout) the reader leaves.
pub fn run(config: &ServeConfig) -> Result<()> {
    let stop = Arc::new(StopFlag::new());
    // Bind before the (slower) GL start-up, so a port in use fails at once; in the list's order,
    // which puts the socket outputs first, so that with --stdout nothing (ours, iceoryx2's or
    // libzmq's) is printed among the frames before the stream has taken stdout and pointed fd 1
    // at stderr; and before the signal handlers, since iceoryx2 installs its own, which must
    // come first for ours to chain to them (see `shm::claim_signals`).
    // Declared before the outputs, so that it is dropped after them on every way out: they
    // borrow it (their frames are its mappings), though it is made only once they are bound.
    let context;
    let mut outputs: Outputs<'_> = Vec::with_capacity(config.outputs.len());
    for output in &config.outputs {
        outputs.push(output.bind().map_err(anyhow::Error::from_boxed)?);
    }
    let control = match &config.control {
        Some(control) => Some(super::control::bind(&control.endpoint)?),
        None => None,
    };
    let watch = watch_signals(&stop)?;
    context = render::context(&config.render)?;
    let mut renderer = Renderer::new(&context, &config.render)?;
    let report = stream(
        config,
        &mut renderer,
        outputs,
        control,
        &stop,
        &mut StatsLog::new(),
    )?;
    drop(watch);
    let seconds = report.served.as_secs_f64().max(1e-9);
    log::info!(
        "streamed {} frames in {seconds:.2} s of serving ({:.1} fps, {:.1} MB sent)",
        report.frames,
        report.frames as f64 / seconds,
        report.bytes_sent as f64 / 1e6
    );
    Ok(())
}

/// Ends the stop relay on every way out of the scope (before the scope joins it).
struct RelayGuard<'scope, 'a> {
    done: &'a AtomicBool,
    stop: &'a StopFlag,
    relay: Option<std::thread::ScopedJoinHandle<'scope, ()>>,
}

impl Drop for RelayGuard<'_, '_> {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        self.stop.poke();
        if let Some(relay) = self.relay.take() {
            let _ = relay.join();
        }
    }
}

/// Shuts the stream down on every way out of the scope: the hub stops handing out frames,
/// consumers get [`SHUTDOWN_GRACE`] to finish the frame they are on, and then the rest are made
/// to give up, so the scope's join (and with it the end of the frames' borrow of the context)
/// comes within the grace plus one wait slice.
struct Closing<'a, F: Frame> {
    feed: &'a Feed<F>,
    /// Whether `close` ran (the end of the stream calls it, then `Drop` would again).
    closed: bool,
}

impl<F: Frame> Closing<'_, F> {
    fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let hub = &self.feed.hub;
        hub.shutdown();
        if !hub.wait_drained(Some(SHUTDOWN_GRACE)) {
            log::warn!("a client did not take its last frame in time; closing anyway");
            hub.abort();
        }
    }
}

impl<F: Frame> Drop for Closing<'_, F> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Streams frames from `renderer` to `outputs` until `--frames` is reached, `stop` is set, or an
/// output ends the stream (the stdout reader left). `observer` sees the outputs' announcements
/// once they serve, and every frame.
pub fn stream<'ctx>(
    config: &ServeConfig,
    renderer: &mut Renderer<'ctx>,
    outputs: Outputs<'ctx>,
    control: Option<ControlSocket>,
    stop: &StopFlag,
    observer: &mut impl Observer,
) -> Result<StreamReport> {
    // With the latest policy a slow client may keep a frame while the renderer moves on: allow a
    // spare buffer per client rather than wait. Lossless clients are waited for by design, but
    // with no spare the buffer just published is always the next one reused (every other one is
    // in flight), so each frame's send ran alone, between two readbacks; one spare lets the
    // outputs send frame N from its mapping while the GL thread reads frame N + 1. It is used
    // at once, so it is allocated now rather than mid-stream.
    let policies: Vec<Policy> = outputs.iter().map(|o| o.policy(config.policy)).collect();
    let spare_limit = if policies.iter().all(|&p| p == Policy::Lossless) {
        1
    } else {
        config.max_clients
    };
    renderer.ring.set_spare_limit(spare_limit);
    if policies.contains(&Policy::Lossless) {
        renderer.ring.allocate_spares(1)?;
    }
    let shape = config.render.shape();
    let feed = Feed::new(
        renderer.ring.capacity() + spare_limit,
        shape,
        config.send_timeout,
        config.max_clients,
    )
    .with_compress_threads(config.compress_threads)
    // Frames that answer control requests say which: glstream headers become version 2.
    .with_request_ids(control.is_some());
    let mut announcements: Vec<String> = outputs.iter().filter_map(|o| o.announcement()).collect();
    if let Some(control) = &control {
        announcements.push(format!("control listening on {}", control.bound));
    }
    let fail_at: Option<u64> = std::env::var(FAIL_AT_ENV).ok().and_then(|v| v.parse().ok());
    let relay_done = AtomicBool::new(false);
    let report = std::thread::scope(|scope| -> Result<StreamReport> {
        let mut closing = Closing {
            feed: &feed,
            closed: false,
        };
        let sole_output = outputs.len() == 1;
        for (output, policy) in outputs.into_iter().zip(&policies) {
            output.start(scope, &feed, *policy)?;
        }
        // Reading straight into the memory an output lends saves the copy out of a PBO where the
        // read costs what a read into a PBO does (a software rasterizer), and only that output
        // then wants the frames; and where the copy saved outweighs handing every frame to the
        // reader thread and back (see DIRECT_READ_MIN_BYTES).
        if let Some(lending) = feed.lending()
            && sole_output
            && (lending.always
                || (renderer.is_software() && shape.frame_bytes() >= DIRECT_READ_MIN_BYTES))
        {
            match renderer.read_into(Arc::clone(&lending.lender)) {
                Ok(()) => log::info!(
                    "reading frames straight into {}'s shared memory",
                    lending.what
                ),
                // Asked for: the one-line error. Chosen: the PBO ring works wherever GL does.
                Err(e) if lending.always => return Err(e.into()),
                Err(e) => log::warn!(
                    "cannot read frames straight into {}'s shared memory ({e}); reading through the PBO ring",
                    lending.what
                ),
            }
        }
        // The control channel's thread wakes the render loop (in the hub) for each request.
        let feed_ref = &feed;
        let link = match control {
            Some(control) => {
                let (link, body) = control
                    .serve(move || feed_ref.hub.interrupt())
                    .context("cannot start the control channel")?;
                std::thread::Builder::new()
                    .name("control".into())
                    .spawn_scoped(scope, body)
                    .context("cannot start the control thread")?;
                Some(LinkGuard(link))
            }
            None => None,
        };
        let link = link.as_ref().map(|guard| &guard.0);
        // A stop is a flag the render loop looks at whenever the hub wakes it: this relay wakes
        // the hub when one comes, so that no wait in the loop needs a timeout to notice it.
        let relay_done = &relay_done;
        let relay = std::thread::Builder::new()
            .name("stop relay".into())
            .spawn_scoped(scope, move || {
                if stop.wait_while(&|| !relay_done.load(Ordering::SeqCst)) {
                    feed_ref.hub.interrupt();
                }
            })
            .context("cannot start the stop relay thread")?;
        let _relay = RelayGuard {
            done: relay_done,
            stop,
            relay: Some(relay),
        };
        observer.ready(&announcements)?;
        let readback = if renderer.reads_lent() {
            "read on the readback thread".to_string()
        } else {
            format!(
                "{} + up to {}",
                plural(renderer.ring.capacity(), "PBO"),
                plural(spare_limit, "spare")
            )
        };
        log::info!(
            "streaming {}x{} {}{}, {readback}",
            shape.width_px,
            shape.height_px,
            shape.format.name(),
            if shape.top_down { " top-down" } else { "" },
        );
        let (frames, served) = match link {
            Some(link) if config.control.as_ref().is_some_and(|c| c.on_request) => {
                frames_on_request(config, renderer, &feed, stop, observer, link)?
            }
            _ => frames(config, renderer, &feed, stop, observer, fail_at, link)?,
        };
        closing.close();
        Ok(StreamReport {
            frames,
            served,
            bytes_sent: feed.stats.bytes_sent.load(Ordering::Relaxed),
            spares: renderer.ring.buffer_count() - renderer.ring.capacity(),
        })
    });
    // The lender was this stream's output's: the next stream on this renderer (the bench's)
    // starts with the ring again.
    renderer.read_through_ring();
    let report = report?;
    if let Some(failure) = feed.failure() {
        bail!("{failure}");
    }
    log::info!(
        "done after {} ({} + {} used)",
        plural(report.frames as usize, "frame"),
        plural(renderer.ring.capacity(), "PBO"),
        plural(report.spares, "spare"),
    );
    Ok(report)
}

/// Ends the control channel's thread on every way out of the stream's scope, answering the
/// requests still waiting: their frames will not come.
struct LinkGuard(Link);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        while let Some(pending) = self.0.queue().pop() {
            self.0.refuse(
                pending,
                "the stream ended before this request's frame".into(),
            );
        }
        self.0.stop();
    }
}

/// Requests applied to the scene whose frames are not published yet, oldest first.
struct Awaiting<'a> {
    link: Option<&'a Link>,
    frames: VecDeque<(u64, u64, Pending)>,
}

impl Awaiting<'_> {
    /// The frame numbered `sequence`, index `frame_index`, answers `pending`.
    fn expect(&mut self, sequence: u64, frame_index: u64, pending: Pending) {
        self.frames.push_back((sequence, frame_index, pending));
    }

    /// Every frame up to `sequence` has been handed to the outputs: answers their requests.
    fn published(&mut self, sequence: u64) {
        let Some(link) = self.link else { return };
        while self.frames.front().is_some_and(|(s, _, _)| *s <= sequence) {
            if let Some((_, index, pending)) = self.frames.pop_front() {
                link.done(pending, index);
            }
        }
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        // Frames the stream ended before publishing (a stop, an error, a run abandoned).
        if let Some(link) = self.link {
            for (_, _, pending) in self.frames.drain(..) {
                link.refuse(
                    pending,
                    "the stream ended before this request's frame".into(),
                );
            }
        }
    }
}

/// `--on-request`: waits for each control request and renders exactly the one frame it asks
/// for, published (on every output) before the request is answered.
fn frames_on_request<'ctx>(
    config: &ServeConfig,
    renderer: &mut Renderer<'ctx>,
    feed: &Feed<FrameLease<'ctx>>,
    stop: &StopFlag,
    observer: &mut impl Observer,
    link: &Link,
) -> Result<(u64, Duration)> {
    let hub = &feed.hub;
    let signalled = || stop.is_stopped();
    let stopped = || signalled() || feed.is_ended();
    let clients = || hub.client_count();
    let waiting = || stopped() || !link.queue().is_empty();
    let mut served = Duration::ZERO;
    let mut sequence: u64 = 0;
    let mut next_index: u64 = 0;
    'requests: loop {
        // The control thread wakes the hub when a request comes; a stop wakes it too.
        while !waiting() {
            hub.wait_until(Instant::now() + Duration::from_secs(3600), &waiting);
        }
        if stopped() {
            break;
        }
        let Some(pending) = link.queue().pop() else {
            continue;
        };
        // A frame nobody can take answers nothing: the request waits for a consumer.
        if hub.wait_for_clients(&stopped).is_none() {
            link.refuse(
                pending,
                "the stream stopped before this request's frame".into(),
            );
            break;
        }
        if let Err(error) = renderer.apply(&pending.request.settings) {
            link.refuse(pending, error);
            continue;
        }
        let started = Instant::now();
        let frame_index = pending.request.frame.unwrap_or(next_index);
        next_index = frame_index.saturating_add(1);
        let meta = FrameMeta {
            sequence,
            frame_index,
            timestamp_ns: unix_ns(),
            request_id: pending.request.id,
        };
        renderer.render(frame_index);
        let (slot, source) = renderer.acquire()?;
        if let Some(leased) = slot.leased_frame() {
            hub.retract_through(leased.sequence, &stopped);
        }
        while !slot.wait_free(Duration::from_millis(50)) {
            if stopped() {
                link.refuse(
                    pending,
                    "the stream stopped before this request's frame".into(),
                );
                break 'requests;
            }
        }
        slot.submit(source, meta)?;
        sequence += 1;
        // Out now, not once the ring is full: the request waits for this frame.
        let epoch = hub.epoch();
        while let Some(lease) = renderer.complete_oldest()? {
            hub.publish(epoch, lease);
        }
        link.done(pending, frame_index);
        observer.frame(&Progress {
            frames: sequence,
            stats: &feed.stats,
            clients: &clients,
        });
        served += started.elapsed();
        if config.frames.is_some_and(|limit| sequence >= limit) {
            // Every consumer gets what it is due, as after any --frames run.
            hub.finish();
            hub.wait_drained_or(&signalled);
            break;
        }
    }
    Ok((sequence, served))
}

/// The smallest frame that `--shm-readback auto` reads straight into a sample: below it the copy
/// out of a PBO costs less than the reader thread's two hand-overs a frame. Measured on llvmpipe
/// (2 cores, `bench/shm-readback.sh`): at 800×600 RGBA (1.9 MB) the ring was 2–3 % faster, at
/// 1280×720 (3.7 MB) the reader 2–3 % faster, at 1920×1080 6–7 %.
const DIRECT_READ_MIN_BYTES: u64 = 3 << 20;

/// Publishes the oldest frame read, if there is one, in epoch `epoch`; says whether a consumer
/// was there to take it.
fn publish_oldest<'ctx>(
    renderer: &mut Renderer<'ctx>,
    hub: &Hub<FrameLease<'ctx>>,
    epoch: u64,
    awaiting: &mut Awaiting<'_>,
    observer: &mut impl Observer,
) -> Result<Option<bool>> {
    let Some(lease) = renderer.complete_oldest()? else {
        return Ok(None);
    };
    observer.mark(Mark::Mapped);
    let published = lease.meta().sequence;
    let delivered = hub.publish(epoch, lease);
    awaiting.published(published);
    observer.mark(Mark::Published);
    Ok(Some(delivered))
}

/// The render loop proper; returns the frames rendered and the time spent serving them. With
/// a control channel (`link`), one waiting request is applied before each frame, which then
/// answers it.
fn frames<'ctx>(
    config: &ServeConfig,
    renderer: &mut Renderer<'ctx>,
    feed: &Feed<FrameLease<'ctx>>,
    stop: &StopFlag,
    observer: &mut impl Observer,
    fail_at: Option<u64>,
    link: Option<&Link>,
) -> Result<(u64, Duration)> {
    let mut awaiting = Awaiting {
        link,
        frames: VecDeque::new(),
    };
    // With a control channel a request may set the frame index: frames count on from it.
    let (mut index_base, mut index_from) = (0u64, 0u64);
    let hub = &feed.hub;
    let signalled = || stop.is_stopped();
    let stopped = || signalled() || feed.is_ended();
    let clients = || hub.client_count();
    let mut pacer = Pacer::new(config.frame_interval);
    let mut served = Duration::ZERO;
    // `sequence` numbers every rendered frame over the process; the scene's frame index restarts
    // at 0 whenever a client finds the server idle (a new epoch, a new run), and so does the
    // --frames count.
    let mut sequence: u64 = 0;
    let mut epoch_start: u64 = 0;
    let mut epoch = None;
    // Whether the newest frame published reached a consumer: a run that reaches --frames
    // counts only if someone was still there to be served its last frame.
    let mut delivered = false;
    // On a GPU the readback is asynchronous and the GL thread must not wait for the render; on
    // llvmpipe `glReadPixels` waits for the rasterizer anyway (see the loop).
    let publish_early = renderer.publishes_early();
    let publish_first = renderer.reads_lent();
    'frames: loop {
        if stopped() {
            break;
        }
        let Some(current) = hub.wait_for_clients(&stopped) else {
            break;
        };
        if epoch != Some(current) {
            if epoch.is_some() {
                log::info!("server was idle: restarting at frame 0");
            }
            renderer.discard_in_flight();
            epoch = Some(current);
            epoch_start = sequence;
            (index_base, index_from) = (0, sequence);
            pacer.reset();
        }
        // A control request, applied before this frame (which answers it) or refused whole.
        let mut request_id = 0;
        while let Some(pending) = link.and_then(|link| link.queue().pop()) {
            match renderer.apply(&pending.request.settings) {
                Err(error) => link.expect("popped from it").refuse(pending, error),
                Ok(()) => {
                    if let Some(frame) = pending.request.frame {
                        (index_base, index_from) = (frame, sequence);
                    }
                    request_id = pending.request.id;
                    let frame_index = index_base + (sequence - index_from);
                    awaiting.expect(sequence, frame_index, pending);
                    break;
                }
            }
        }
        let frame_index = match link {
            Some(_) => index_base + (sequence - index_from),
            None => config.shard.frame_index(sequence - epoch_start),
        };
        if config.frames.is_some_and(|limit| match link {
            // A steered stream's indices are the requests': --frames counts frames.
            Some(_) => sequence - epoch_start >= limit,
            // With --shard K/N the n-th frame of a run is the scene's frame K + N·n.
            None => config.shard.frame_index(sequence - epoch_start) >= limit,
        }) {
            // --frames reached: the frames still in flight go out too, and every consumer gets
            // what it is due (each frame within the send timeout), unless a signal comes first.
            let drain = Instant::now();
            while let Some(lease) = renderer.complete_oldest()? {
                let published = lease.meta().sequence;
                delivered = hub.publish(current, lease);
                awaiting.published(published);
            }
            if !delivered {
                // Everyone who asked for this run left before its end: it is abandoned, and the
                // next client starts a whole run from frame 0, as a client of an idle server.
                log::info!("every client left before the last frame; waiting for a new run");
                continue;
            }
            hub.finish();
            hub.wait_drained_or(&signalled);
            served += drain.elapsed();
            break;
        }
        if fail_at == Some(sequence - epoch_start) {
            bail!("failure injected at frame {sequence} ({FAIL_AT_ENV})");
        }
        let started = Instant::now();
        observer.mark(Mark::Start);
        let meta = FrameMeta {
            sequence,
            frame_index,
            timestamp_ns: unix_ns(),
            request_id,
        };
        renderer.render(meta.frame_index);
        if publish_first {
            // Reading into lent memory: frame N − 1 was read on the reader thread while N was
            // drawn; N goes to the rasterizer first, and N − 1 is published while it runs, so
            // that waking the outputs never delays the rasterizer's next frame.
            renderer.flush();
            observer.mark(Mark::Rendered);
            if let Some(reached) = publish_oldest(renderer, hub, current, &mut awaiting, observer)?
            {
                delivered = reached;
            }
            renderer.wait_rendered()?;
            observer.mark(Mark::Rasterized);
        } else if publish_early {
            // A software rasterizer shares the CPU with the outputs: publishing frame N − 1
            // only after frame N's readback started its send just as frame N + 1's
            // rasterization took both cores. Waiting for frame N to be rasterized first and
            // publishing N − 1 then overlaps the send with the readback copy instead.
            renderer.wait_rendered()?;
            observer.mark(Mark::Rendered);
            if let Some(reached) = publish_oldest(renderer, hub, current, &mut awaiting, observer)?
            {
                delivered = reached;
            }
        } else {
            observer.mark(Mark::Rendered);
        }
        let (slot, source) = renderer.acquire()?;
        if let Some(leased) = slot.leased_frame() {
            hub.retract_through(leased.sequence, &stopped);
        }
        // The buffer may still be in a writer's hands (a lossless stream, or no spare left):
        // wait for it in slices, so that a signal is never stuck behind a stalled reader.
        while !slot.wait_free(Duration::from_millis(50)) {
            if stopped() {
                break 'frames;
            }
        }
        observer.mark(Mark::Retracted);
        slot.submit(source, meta)?;
        observer.mark(Mark::Submitted);
        sequence += 1;
        if !publish_early
            && renderer.is_full()
            && let Some(reached) = publish_oldest(renderer, hub, current, &mut awaiting, observer)?
        {
            delivered = reached;
        }
        observer.frame(&Progress {
            frames: sequence,
            stats: &feed.stats,
            clients: &clients,
        });
        pacer.wait(hub, &stopped);
        served += started.elapsed();
    }
    Ok((sequence, served))
}
