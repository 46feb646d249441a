//! The main job: render, read back, stream.
//!
//! One frame's life: the scene draws frame N into the FBO; the frames still mapped in the PBO
//! about to be reused are retracted from the hub; `glReadPixels` copies into that PBO and a fence
//! follows; once k frames are in flight the oldest is waited on, mapped, and published to the
//! writers, which send it from the mapping. At the end the ring drains so the last frames go out
//! too. The GL context never leaves this thread; the writers never call GL.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::cli::ServeConfig;
use crate::gl::readback::FrameLease;
use crate::render::Renderer;
use crate::stream::hub::{Frame, Hub, Policy};
use crate::stream::server::{self, Bound, ServeOptions, Server, Stats};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A mapped frame as the writers get it: the lease, plus what the glstream header says about it.
/// Cloning is a reference count and two copies, never an allocation.
#[derive(Clone)]
pub struct Published {
    lease: FrameLease,
    frame_index: u64,
    timestamp_ns: u64,
}

impl Frame for Published {
    fn bytes(&self) -> &[u8] {
        self.lease.bytes()
    }

    fn sequence(&self) -> u64 {
        // The ring numbers frames by the loop's sequence.
        self.lease.frame_index()
    }

    fn frame_index(&self) -> u64 {
        self.frame_index
    }

    fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }
}

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

    /// Sleeps until the next deadline, in slices short enough that `stopped` (a signal) ends
    /// the wait within 50 ms even at a very low --fps.
    fn wait(&mut self, stopped: &dyn Fn() -> bool) {
        let Some(interval) = self.interval else {
            return;
        };
        self.deadline += interval;
        let now = Instant::now();
        if self.deadline > now {
            while !stopped() {
                let left = self.deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(50)));
            }
        } else if now - self.deadline > interval {
            self.deadline = now;
        }
    }
}

/// Logs fps, MB/s and clients once a second.
struct StatsLog {
    started: Instant,
    frames: u64,
    bytes: u64,
}

impl StatsLog {
    fn new(stats: &Stats) -> Self {
        Self {
            started: Instant::now(),
            frames: 0,
            bytes: stats.bytes_sent.load(Ordering::Relaxed),
        }
    }

    fn frame(&mut self, stats: &Stats, clients: impl FnOnce() -> usize) {
        self.frames += 1;
        let elapsed = self.started.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let bytes = stats.bytes_sent.load(Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        log::info!(
            "{:.1} fps, {:.1} MB/s, {} clients",
            self.frames as f64 / seconds,
            (bytes - self.bytes) as f64 / seconds / 1e6,
            clients()
        );
        self.started = Instant::now();
        self.frames = 0;
        self.bytes = bytes;
    }
}

/// How long a signal-initiated shutdown waits for writers to finish the frame they are on.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

/// Time spent in each stage of the render loop, summed over a run (for `bench`).
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimes {
    /// Issuing the scene's draw calls.
    pub render: Duration,
    /// Choosing a PBO and taking its frame back from the hub (waits for lossless clients).
    pub retract: Duration,
    /// `glReadPixels` into the PBO, including waiting for writers still reading that buffer.
    pub readback: Duration,
    /// Waiting on the oldest frame's fence and mapping it.
    pub wait_and_map: Duration,
    /// Handing the mapped frame to the writers.
    pub publish: Duration,
}

/// Where a streaming run stands after a frame, for callers that sample mid-run (`bench` starts
/// its steady-state window after warm-up).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Frames rendered so far.
    pub frames: u64,
    /// GL-thread time per stage so far.
    pub stages: StageTimes,
    /// Writer time in vectored writes so far, summed over writers.
    pub send: Duration,
}

/// What one streaming run did.
#[derive(Debug, Clone, Copy)]
pub struct StreamReport {
    /// Frames rendered.
    pub frames: u64,
    /// From the first frame rendered until the last was delivered.
    pub elapsed: Duration,
    /// GL-thread time per stage, summed.
    pub stages: StageTimes,
    /// Writer time in vectored writes, summed over all writers.
    pub send: Duration,
    /// Bytes written to all clients.
    pub bytes_sent: u64,
    /// PBOs the ring allocated (k plus spares).
    pub buffers: usize,
    /// Whether every writer finished (false when a stalled client outlived the shutdown grace).
    pub drained: bool,
}

/// Runs the server until `--frames` is reached, a signal arrives, or (stdout) the reader leaves.
pub fn run(config: &ServeConfig) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    // Bind before the (slower) GL start-up, so a port in use fails at once.
    let bound = server::bind(&config.transport)?;
    let mut renderer = Renderer::new(&config.render)?;
    let hub = Arc::new(Hub::<Published>::new(config.render.pbo_count));
    {
        // The signal thread sets the flag the loop checks and shuts the hub down, which wakes
        // the GL thread wherever it waits on clients.
        let (stop, hub) = (Arc::clone(&stop), Arc::clone(&hub));
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut received = signals.forever();
                if let Some(signal) = received.next() {
                    log::info!("signal {signal} received: stopping");
                    stop.store(true, Ordering::SeqCst);
                    hub.shutdown();
                }
                // A second signal means "now": no more waiting for writers.
                if let Some(signal) = received.next() {
                    log::warn!("second signal {signal}: exiting at once");
                    std::process::exit(1);
                }
            })
            .context("cannot start the signal thread")?;
    }
    let on_ready = |line: Option<&str>| {
        if let Some(line) = line {
            // The one line on stdout: scripts and tests read the port from it when --port is 0.
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
        Ok(())
    };
    let report = stream(config, &mut renderer, bound, hub, &stop, on_ready, |_| {})?;
    if !report.drained {
        // A writer is still inside a write from a mapped buffer. Dropping the renderer would
        // destroy the context and with it the mapping under that write; the process is about to
        // exit, so the GL state is left to the exit instead.
        std::mem::forget(renderer);
    }
    let seconds = report.elapsed.as_secs_f64().max(1e-9);
    log::info!(
        "streamed {} frames in {seconds:.2} s ({:.1} fps, {:.1} MB sent)",
        report.frames,
        report.frames as f64 / seconds,
        report.bytes_sent as f64 / 1e6
    );
    log::debug!(
        "stage totals: {:?}, writers sending {:?}",
        report.stages,
        report.send
    );
    Ok(())
}

/// Streams frames from `renderer` over the bound transport until `--frames` is reached, `stop`
/// is set, or (stdout) the reader leaves. `on_ready` gets the transport's announcement line once
/// clients can connect; `on_frame` sees the run's progress after every frame (it must not
/// allocate if the loop is to stay allocation-free).
pub fn stream(
    config: &ServeConfig,
    renderer: &mut Renderer,
    bound: Bound,
    hub: Arc<Hub<Published>>,
    stop: &AtomicBool,
    on_ready: impl FnOnce(Option<&str>) -> Result<()>,
    mut on_frame: impl FnMut(&Progress),
) -> Result<StreamReport> {
    // With the latest policy a slow client may keep a frame while the renderer moves on: allow a
    // spare buffer per client rather than wait. Lossless clients are waited for by design, but
    // with no spare the buffer just published is always the next one reused (every other one is
    // in flight), so each frame's send ran alone, between two readbacks; one spare lets the
    // writers send frame N from its mapping while the GL thread reads frame N + 1. It is used
    // at once, so it is allocated now rather than mid-stream.
    match config.policy {
        Policy::Latest => renderer.ring.set_spare_limit(config.max_clients),
        Policy::Lossless => {
            renderer.ring.set_spare_limit(1);
            renderer.ring.allocate_spares()?;
        }
    }
    let stats = Arc::new(Stats::default());
    let server = Server::start(
        bound,
        Arc::clone(&hub),
        ServeOptions {
            header: config.header,
            policy: config.policy,
            width_px: config.render.width_px,
            height_px: config.render.height_px,
            format: config.render.format,
            top_down: config.render.flip,
            send_timeout: config.send_timeout,
            max_clients: config.max_clients,
        },
        Arc::clone(&stats),
    )?;
    on_ready(server.announcement())?;
    log::info!(
        "streaming {}x{} {}{}, {:?} header, {} PBOs, {:?} policy",
        config.render.width_px,
        config.render.height_px,
        config.render.format.name(),
        if config.render.flip { " top-down" } else { "" },
        config.header,
        config.render.pbo_count,
        config.policy
    );

    let stopped = || stop.load(Ordering::SeqCst) || server.closed();
    let mut pacer = Pacer::new(config.frame_interval);
    let mut stats_log = StatsLog::new(&stats);
    let mut stages = StageTimes::default();
    let mut started = None;
    // `sequence` numbers every rendered frame over the process; the scene's frame index restarts
    // at 0 whenever a client finds the server idle (a new epoch).
    let mut sequence: u64 = 0;
    let mut epoch_start: u64 = 0;
    let mut epoch = None;
    // Render timestamps of the frames in flight, by sequence; at most 16 PBOs are in flight.
    let mut stamps = [0u64; 16];
    let published = |lease: FrameLease, stamps: &[u64; 16], epoch_start: u64| Published {
        frame_index: lease.frame_index() - epoch_start,
        timestamp_ns: stamps[(lease.frame_index() % 16) as usize],
        lease,
    };
    'frames: loop {
        if config.frames.is_some_and(|limit| sequence >= limit) || stopped() {
            break;
        }
        let Some(current) = hub.wait_for_clients(&stopped) else {
            break;
        };
        if epoch != Some(current) {
            if epoch.is_some() {
                log::info!("server was idle: restarting at frame 0");
            }
            renderer.ring.discard_in_flight();
            epoch = Some(current);
            epoch_start = sequence;
            pacer.reset();
            stats_log = StatsLog::new(&stats);
        }
        let t0 = Instant::now();
        started.get_or_insert(t0);
        stamps[(sequence % 16) as usize] = unix_ns();
        renderer.render(sequence - epoch_start);
        let t1 = Instant::now();
        if let Some(old) = renderer.ring.choose_slot()? {
            hub.retract_through(old);
        }
        // The buffer may still be in a writer's hands (a lossless stream, or no spare left):
        // wait for it in slices, so that a signal is never stuck behind a stalled reader.
        while !renderer.ring.wait_chosen_slot(Duration::from_millis(50)) {
            if stopped() {
                break 'frames;
            }
        }
        let t2 = Instant::now();
        renderer.submit(sequence)?;
        let t3 = Instant::now();
        let ring = &mut renderer.ring;
        sequence += 1;
        if ring.in_flight() == ring.capacity()
            && let Some(lease) = ring.complete_oldest()?
        {
            let t4 = Instant::now();
            hub.publish(current, published(lease, &stamps, epoch_start));
            stages.wait_and_map += t4 - t3;
            stages.publish += t4.elapsed();
        }
        stages.render += t1 - t0;
        stages.retract += t2 - t1;
        stages.readback += t3 - t2;
        stats_log.frame(&stats, || hub.client_count());
        on_frame(&Progress {
            frames: sequence,
            stages,
            send: Duration::from_nanos(stats.send_ns.load(Ordering::Relaxed)),
        });
        pacer.wait(&stopped);
    }

    let signalled = || stop.load(Ordering::SeqCst);
    if !signalled() {
        // --frames reached (or the only reader left): the frames still in flight go out too,
        // unless a signal arrives meanwhile.
        if let Some(epoch) = epoch {
            while let Some(lease) = renderer.ring.complete_oldest()? {
                hub.publish(epoch, published(lease, &stamps, epoch_start));
            }
        }
        hub.finish();
        while !hub.wait_drained(Some(Duration::from_millis(50))) && !signalled() {}
    }
    let drained = if signalled() {
        // A signal: stop at once, but let every writer finish the frame it is on (the signal
        // thread has already shut the hub).
        hub.shutdown();
        let drained = hub.wait_drained(Some(SHUTDOWN_GRACE));
        if !drained {
            log::warn!("a client did not take its last frame in time; closing anyway");
        }
        drained
    } else {
        true
    };
    let report = StreamReport {
        frames: sequence,
        elapsed: started.map_or(Duration::ZERO, |t| t.elapsed()),
        stages,
        send: Duration::from_nanos(stats.send_ns.load(Ordering::Relaxed)),
        bytes_sent: stats.bytes_sent.load(Ordering::Relaxed),
        buffers: renderer.ring.buffer_count(),
        drained,
    };
    log::info!(
        "done after {sequence} frames ({} PBOs used)",
        report.buffers
    );
    Ok(report)
}
