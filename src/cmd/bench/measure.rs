//! Measuring one configuration: render only, readback, and end to end through the real stream
//! loop to a `glstream recv` process. The stream loop is timed by an [`Observer`] of its own, so
//! nothing of the bench lives in the production loop.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::alloc_count::Snapshot;
use crate::cli::{BenchTransport, ServeConfig, Shard};
use crate::cmd::serve::{self, Mark, Observer, Progress};
use crate::gl::readback::FrameLease;
use crate::gl::readback::FrameMeta;
use crate::render::{RenderOptions, Renderer};
use crate::stream::hub::Policy;
use crate::stream::output::Output as StreamOutput;
use crate::stream::protocol::HeaderMode;
use crate::stream::shm::{self, ShmReadback};
use crate::stream::socket::{self, Transport};
use crate::stream::stop::StopFlag;

/// Stages a frame's time is split into, in table order. Each mode fills the ones it has.
pub const STAGES: [&str; 7] = [
    "render", "finish", "retract", "readback", "wait_map", "publish", "send",
];

/// One measured run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Frames per second over the window.
    pub fps: f64,
    /// Milliseconds per frame for each of [`STAGES`], `None` where the mode has no such stage.
    pub stage_ms: [Option<f64>; STAGES.len()],
    /// Allocations in the measured window, and the frames in it.
    pub allocations: u64,
    /// Frames in the window.
    pub frames: u64,
    /// Resident memory at the start and the end of the measured window.
    pub rss_kib: (u64, u64),
    /// CPU milliseconds per frame: this process (GL thread, llvmpipe's threads, writers), and
    /// the consumer process (e2e only).
    pub cpu_ms: (f64, Option<f64>),
}

/// Render then `glFinish`, frame after frame.
pub fn render_only(renderer: &mut Renderer<'_>, warmup: u64, frames: u64) -> Result<Sample> {
    for frame in 0..warmup {
        renderer.render(frame);
        renderer.finish();
    }
    let window = Window::open();
    let (mut render, mut finish) = (Duration::ZERO, Duration::ZERO);
    for frame in warmup..warmup + frames {
        let t0 = Instant::now();
        renderer.render(frame);
        let t1 = Instant::now();
        renderer.finish();
        render += t1 - t0;
        finish += t1.elapsed();
    }
    let mut stage_ms = [None; STAGES.len()];
    stage_ms[0] = Some(per_frame_ms(render, frames));
    stage_ms[1] = Some(per_frame_ms(finish, frames));
    Ok(window.close(frames, stage_ms))
}

/// Render and read back through the ring, mapping each frame and dropping the lease at once.
pub fn readback(renderer: &mut Renderer<'_>, warmup: u64, frames: u64) -> Result<Sample> {
    let total = warmup + frames;
    let mut times = [Duration::ZERO; 3];
    let mut window = None;
    for frame in 0..total {
        if frame == warmup {
            times = [Duration::ZERO; 3];
            window = Some(Window::open());
        }
        let t0 = Instant::now();
        renderer.render(frame);
        let t1 = Instant::now();
        renderer.submit(FrameMeta {
            sequence: frame,
            frame_index: frame,
            timestamp_ns: 0,
            request_id: 0,
        })?;
        let t2 = Instant::now();
        if renderer.ring.is_full() {
            // The lease is dropped unread: this mode measures getting the bytes, not using them.
            drop(renderer.ring.complete_oldest()?);
        }
        times[0] += t1 - t0;
        times[1] += t2 - t1;
        times[2] += t2.elapsed();
    }
    // The frames still in flight belong to the window too.
    let t = Instant::now();
    while renderer.ring.complete_oldest()?.is_some() {}
    times[2] += t.elapsed();
    let window = window.context("no frame was measured (warm-up covers the run)")?;
    let mut stage_ms = [None; STAGES.len()];
    stage_ms[0] = Some(per_frame_ms(times[0], frames));
    stage_ms[3] = Some(per_frame_ms(times[1], frames));
    stage_ms[4] = Some(per_frame_ms(times[2], frames));
    Ok(window.close(frames, stage_ms))
}

/// A socket path no other bench run (in this process or another) uses.
fn unix_socket_path() -> PathBuf {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("glstream-bench-{}-{run}.sock", std::process::id()))
}

/// A shared-memory service name no other bench run (in this process or another) uses.
fn shm_service_name() -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("glstream/bench-{}-{run}", std::process::id())
}

/// Time per stage of the stream loop, summed: render, finish (the wait for the rasterizer, where
/// the loop marks it apart), retract, readback, wait + map, publish (the slots of [`STAGES`] they
/// go in).
const LOOP_STAGES: [(Mark, usize); 6] = [
    (Mark::Rendered, 0),
    (Mark::Rasterized, 1),
    (Mark::Retracted, 2),
    (Mark::Submitted, 3),
    (Mark::Mapped, 4),
    (Mark::Published, 5),
];

/// Times the real stream loop from outside it: starts the consumer when the output is ready,
/// sums each stage between marks, and opens the measured window after the warm-up.
struct BenchObserver<'a> {
    start_consumer: &'a mut dyn FnMut() -> Result<()>,
    warmup: u64,
    total: u64,
    last_mark: Instant,
    stages: [Duration; STAGES.len()],
    window: Option<(Window, u64, [Duration; STAGES.len()], Duration)>,
    send: Duration,
    allocs_end: Option<Snapshot>,
    /// Whether the loop waited for the rasterizer apart (reading into lent memory): only then
    /// has the finish column a figure.
    rasterized: bool,
}

impl Observer for BenchObserver<'_> {
    fn ready(&mut self, _announcements: &[String]) -> Result<()> {
        (self.start_consumer)()
    }

    fn mark(&mut self, mark: Mark) {
        let now = Instant::now();
        self.rasterized |= mark == Mark::Rasterized;
        if let Some(&(_, slot)) = LOOP_STAGES.iter().find(|(m, _)| *m == mark) {
            self.stages[slot] += now - self.last_mark;
        }
        self.last_mark = now;
    }

    fn frame(&mut self, progress: &Progress<'_>) {
        self.send = progress.send();
        // The window also waits for the first frame sent: until then the accept thread may still
        // be logging the client and spawning its writer, which allocates once, not per frame.
        if self.window.is_none() && progress.frames >= self.warmup && self.send > Duration::ZERO {
            self.window = Some((Window::open(), progress.frames, self.stages, self.send));
        }
        if progress.frames == self.total {
            self.allocs_end = Some(Snapshot::now());
        }
    }
}

/// The real stream loop, lossless, to a `glstream recv` child process that reads every frame.
pub fn end_to_end(
    renderer: &mut Renderer<'_>,
    options: &RenderOptions,
    transport: BenchTransport,
    warmup: u64,
    frames: u64,
) -> Result<Sample> {
    let total = warmup + frames;
    let mut args = vec!["recv".to_string(), "-q".into()];
    let (target, service) = match transport {
        BenchTransport::Tcp => (Some(Transport::Tcp(([127, 0, 0, 1], 0).into())), None),
        BenchTransport::Unix => (Some(Transport::Unix(unix_socket_path())), None),
        BenchTransport::Shm => (None, Some((shm_service_name(), ShmReadback::Auto))),
        BenchTransport::ShmPbo => (None, Some((shm_service_name(), ShmReadback::Pbo))),
        BenchTransport::ShmDirect => (None, Some((shm_service_name(), ShmReadback::Direct))),
    };
    // The output is bound here rather than from the config's list: the consumer must be told
    // where to connect (a port 0 resolved).
    let config = ServeConfig {
        render: options.clone(),
        outputs: Vec::new(),
        max_clients: 1,
        // Every frame must reach the consumer, or the fps would count frames nobody received.
        policy: Some(Policy::Lossless),
        frames: Some(total),
        frame_interval: None,
        send_timeout: Duration::from_secs(30),
        shard: Shard::ALL,
        compress_threads: 1,
        control: None,
    };
    let output: Box<dyn StreamOutput<FrameLease<'_>>> = match (&target, &service) {
        (Some(target), _) => {
            let output = socket::bind(
                target,
                HeaderMode::Blender,
                crate::cli::size::auto_send_buffer(),
            )?;
            match (output.local_addr(), output.unix_path()) {
                (Some(addr), _) => args.extend(["--connect".into(), addr.to_string()]),
                (None, Some(path)) => args.extend(["--unix".into(), path.display().to_string()]),
                (None, None) => bail!("bench serves TCP and Unix sockets only"),
            }
            Box::new(output)
        }
        (None, Some((service, readback))) => {
            let output = shm::bind(service, *readback)?;
            // iceoryx2's signal handlers only record a signal; Ctrl-C must still end the bench.
            shm::keep_default_signals().context("cannot install signal handlers")?;
            args.extend(["--shm".into(), service.clone()]);
            Box::new(output)
        }
        (None, None) => bail!("no output to measure"),
    };
    args.extend(["--frames".into(), total.to_string()]);
    args.extend(["--format".into(), options.format.name().to_string()]);
    let exe = std::env::current_exe().context("finding the glstream executable")?;

    let stop = Arc::new(StopFlag::new());
    let mut consumer: Option<JoinHandle<std::io::Result<Output>>> = None;
    let mut start_consumer = || -> Result<()> {
        let child = Command::new(&exe)
            .args(&args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the consumer (glstream recv)")?;
        // A consumer that fails would leave a lossless stream waiting for it forever: when it
        // exits unsuccessfully, stop the stream.
        let stop = Arc::clone(&stop);
        consumer = Some(thread::spawn(move || {
            let output = child.wait_with_output();
            if !matches!(&output, Ok(out) if out.status.success()) {
                stop.stop();
            }
            output
        }));
        Ok(())
    };
    let mut observer = BenchObserver {
        start_consumer: &mut start_consumer,
        warmup,
        total,
        last_mark: Instant::now(),
        stages: [Duration::ZERO; STAGES.len()],
        window: None,
        send: Duration::ZERO,
        allocs_end: None,
        rasterized: false,
    };
    let streamed = serve::stream(&config, renderer, vec![output], None, &stop, &mut observer);
    let ended = Instant::now();
    let BenchObserver {
        stages,
        window,
        send,
        allocs_end,
        rasterized,
        ..
    } = observer;
    let output = match consumer {
        Some(handle) => Some(
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("the consumer's watcher thread panicked"))?
                .context("waiting for the consumer")?,
        ),
        None => None,
    };
    let report = streamed?;
    let output = output.context("the consumer was never started")?;
    if !output.status.success() {
        bail!(
            "the consumer (glstream recv) failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    if report.frames != total {
        bail!("streamed {} frames, expected {total}", report.frames);
    }
    let (window, frames_at_start, stages_at_start, send_at_start) =
        window.context("no frame was measured (warm-up covers the run)")?;
    let frames = total - frames_at_start;
    if frames == 0 {
        bail!("no frame was measured: the first frame was sent only at the end");
    }
    let allocs_end = allocs_end.context("the last frame was not seen")?;
    let mut stage_ms = [None; STAGES.len()];
    for &(mark, slot) in &LOOP_STAGES {
        if mark == Mark::Rasterized && !rasterized {
            continue;
        }
        stage_ms[slot] = Some(per_frame_ms(
            stages[slot].saturating_sub(stages_at_start[slot]),
            frames,
        ));
    }
    stage_ms[6] = Some(per_frame_ms(send.saturating_sub(send_at_start), frames));
    // The consumer's CPU time covers its whole life (warm-up frames included), so it is divided
    // by every frame it read.
    let elapsed = ended - window.started;
    Ok(window.sample(frames, elapsed, allocs_end, stage_ms, Some(total)))
}

/// The measured part of a run: when it began, and the allocation, memory and CPU counters then.
struct Window {
    started: Instant,
    allocs: Snapshot,
    rss_kib: u64,
    cpu: CpuTime,
}

impl Window {
    fn open() -> Self {
        // RSS and CPU first: reading /proc allocates, which must not count against the loop.
        let rss_kib = rss_kib();
        let cpu = CpuTime::now();
        let allocs = Snapshot::now();
        Self {
            started: Instant::now(),
            allocs,
            rss_kib,
            cpu,
        }
    }

    /// Closes the window now, for the modes with no consumer.
    fn close(self, frames: u64, stage_ms: [Option<f64>; STAGES.len()]) -> Sample {
        let elapsed = self.started.elapsed();
        let allocs_end = Snapshot::now();
        self.sample(frames, elapsed, allocs_end, stage_ms, None)
    }

    /// The figures for `frames` frames in `elapsed`; `consumer_frames` divides the consumer
    /// process's CPU time, when there is one.
    fn sample(
        self,
        frames: u64,
        elapsed: Duration,
        allocs_end: Snapshot,
        stage_ms: [Option<f64>; STAGES.len()],
        consumer_frames: Option<u64>,
    ) -> Sample {
        let cpu = CpuTime::now().since(self.cpu);
        Sample {
            fps: fps(frames, elapsed),
            stage_ms,
            allocations: allocs_end.since(self.allocs).allocations,
            frames,
            rss_kib: (self.rss_kib, rss_kib()),
            cpu_ms: (
                cpu.own_ms / frames as f64,
                consumer_frames.map(|n| cpu.children_ms / n as f64),
            ),
        }
    }
}

pub fn fps(frames: u64, elapsed: Duration) -> f64 {
    frames as f64 / elapsed.as_secs_f64().max(1e-9)
}

pub fn per_frame_ms(total: Duration, frames: u64) -> f64 {
    total.as_secs_f64() * 1e3 / frames.max(1) as f64
}

/// This process's resident set in KiB (`VmRSS`), 0 where /proc cannot say.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time used so far by this process and by its children that have been waited for, from
/// /proc/self/stat (utime, stime, cutime, cstime), in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    own_ms: f64,
    children_ms: f64,
}

impl CpuTime {
    /// Clock ticks per second of /proc's times: USER_HZ, 100 on every Linux this runs on.
    const TICKS_PER_SECOND: f64 = 100.0;

    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The command name may hold spaces; the fields after it are space-separated numbers,
        // starting with field 3 (state): utime is field 14, so index 11 here.
        let fields: Vec<f64> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.split(' ').map(|f| f.parse().unwrap_or(0.0)).collect())
            .unwrap_or_default();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0.0);
        let ms = 1e3 / Self::TICKS_PER_SECOND;
        Self {
            own_ms: (field(11) + field(12)) * ms,
            children_ms: (field(13) + field(14)) * ms,
        }
    }

    fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            own_ms: self.own_ms - earlier.own_ms,
            children_ms: self.children_ms - earlier.children_ms,
        }
    }
}
