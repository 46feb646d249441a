//! `glstream bench`: how fast each stage of the pipeline is, measured in one run.
//!
//! Three modes, each through the same [`Renderer`] the server uses:
//! - **render**: draw, then `glFinish`, so the time is the rasterizer's and not just submission;
//! - **readback**: draw and read back through a ring of k PBOs, mapping every frame but touching
//!   none of its bytes;
//! - **e2e**: the real [`serve::stream`] loop, lossless, to a separate `glstream recv` process
//!   reading every byte over loopback TCP or a Unix socket.
//!
//! Every configuration runs `--repeats` times, alternating (all configurations once, then all
//! again), and the table reports medians: these machines are shared and noisy, and alternating
//! spreads a noisy minute over every configuration instead of one. The first `--warmup` frames of
//! each run are not measured. Within the measured window the counting allocator
//! ([`crate::alloc_count`]) must see nothing: the frame loop is meant not to allocate.
//!
//! The table is for people; the last line of stdout is one JSON object for scripts. It is written
//! by hand (a few numbers and names, nothing to escape but paths) rather than pulling in a
//! serializer for one line.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::alloc_count::Snapshot;
use crate::cli::{BenchArgs, BenchTransport, MAX_PBO_COUNT, ServeConfig};
use crate::cmd::serve::{self, Progress};
use crate::render::{RenderOptions, Renderer};
use crate::scene::SceneSource;
use crate::stream::hub::{Hub, Policy};
use crate::stream::protocol::HeaderMode;
use crate::stream::server::{self, Bound, Transport};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Render,
    Readback,
    EndToEnd(BenchTransport),
}

/// One configuration: a mode and, except for render-only, a ring length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Config {
    mode: Mode,
    pbo_count: usize,
}

impl Config {
    fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Render => "render",
            Mode::Readback => "readback",
            Mode::EndToEnd(_) => "e2e",
        }
    }

    fn transport_name(&self) -> &'static str {
        match self.mode {
            Mode::EndToEnd(transport) => transport.name(),
            _ => "-",
        }
    }
}

/// Stages a frame's time is split into, in table order. Each mode fills the ones it has.
const STAGES: [&str; 7] = [
    "render", "finish", "retract", "readback", "wait_map", "publish", "send",
];

/// One measured run.
#[derive(Debug, Clone)]
struct Sample {
    fps: f64,
    /// Milliseconds per frame for each of [`STAGES`], `None` where the mode has no such stage.
    stage_ms: [Option<f64>; STAGES.len()],
    /// Allocations in the measured window, and the frames in it.
    allocations: u64,
    frames: u64,
    /// Resident memory at the start and the end of the measured window.
    rss_kib: (u64, u64),
    /// CPU milliseconds per frame: this process (GL thread, llvmpipe's threads, writers), and
    /// the consumer process (e2e only).
    cpu_ms: (f64, Option<f64>),
}

/// Validated bench options.
struct Plan {
    render: RenderOptions,
    configs: Vec<Config>,
    frames: u64,
    warmup: u64,
    repeats: usize,
}

impl BenchArgs {
    fn plan(&self) -> Result<Plan> {
        let render = self.render.validate()?;
        HeaderMode::Blender.check_size(render.width_px, render.height_px, render.format)?;
        if self.frames == 0 {
            bail!("--frames 0: nothing to measure");
        }
        if self.repeats == 0 {
            bail!("--repeats 0: nothing to measure");
        }
        if self.pbo_counts.is_empty() {
            bail!("--pbo-counts: name at least one ring length");
        }
        if let Some(bad) = self
            .pbo_counts
            .iter()
            .find(|k| !(1..=MAX_PBO_COUNT).contains(*k))
        {
            bail!("--pbo-counts {bad}: each must be between 1 and {MAX_PBO_COUNT}");
        }
        let mut configs = vec![Config {
            mode: Mode::Render,
            pbo_count: 1,
        }];
        for &pbo_count in &self.pbo_counts {
            configs.push(Config {
                mode: Mode::Readback,
                pbo_count,
            });
        }
        for &transport in &self.transports {
            for &pbo_count in &self.pbo_counts {
                configs.push(Config {
                    mode: Mode::EndToEnd(transport),
                    pbo_count,
                });
            }
        }
        configs.dedup();
        Ok(Plan {
            render,
            configs,
            frames: self.frames,
            warmup: self.warmup,
            repeats: self.repeats,
        })
    }
}

/// Runs every configuration `--repeats` times, alternating, and prints the table and the JSON.
pub fn run(args: &BenchArgs) -> Result<()> {
    let plan = args.plan()?;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); plan.configs.len()];
    let mut renderer_name = String::new();
    for repeat in 0..plan.repeats {
        for (config, runs) in plan.configs.iter().zip(&mut samples) {
            log::info!(
                "bench run {}/{}: {} {} PBOs {}",
                repeat + 1,
                plan.repeats,
                config.mode_name(),
                config.pbo_count,
                config.transport_name()
            );
            let options = RenderOptions {
                pbo_count: config.pbo_count,
                ..plan.render.clone()
            };
            let mut renderer = Renderer::new(&options)?;
            if renderer_name.is_empty() {
                renderer_name = renderer.context_info().renderer.clone();
            }
            let sample = match config.mode {
                Mode::Render => render_only(&mut renderer, plan.warmup, plan.frames),
                Mode::Readback => readback(&mut renderer, plan.warmup, plan.frames),
                Mode::EndToEnd(transport) => {
                    end_to_end(&mut renderer, &options, transport, plan.warmup, plan.frames)
                }
            }
            .with_context(|| {
                format!(
                    "bench {} with {} PBOs {}",
                    config.mode_name(),
                    config.pbo_count,
                    config.transport_name()
                )
            })?;
            runs.push(sample);
        }
    }
    let summary = Summary::new(&plan, &samples, renderer_name);
    print!("{}", summary.table());
    println!("{}", summary.json());
    Ok(())
}

/// Render then `glFinish`, frame after frame.
fn render_only(renderer: &mut Renderer, warmup: u64, frames: u64) -> Result<Sample> {
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
fn readback(renderer: &mut Renderer, warmup: u64, frames: u64) -> Result<Sample> {
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
        renderer.submit(frame)?;
        let t2 = Instant::now();
        if renderer.ring.in_flight() == renderer.ring.capacity() {
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

/// Where a consumer connects, as `glstream recv` arguments.
fn consumer_args(bound: &Bound) -> Result<Vec<String>> {
    Ok(match bound {
        Bound::Tcp(listener) => vec![
            "--connect".into(),
            listener
                .local_addr()
                .context("reading the bench listener's address")?
                .to_string(),
        ],
        Bound::Unix(_, path) => vec!["--unix".into(), path.display().to_string()],
        Bound::Connect(_) | Bound::Stdout(_) => bail!("bench serves TCP and Unix sockets only"),
    })
}

/// A socket path no other bench run (in this process or another) uses.
fn unix_socket_path() -> PathBuf {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("glstream-bench-{}-{run}.sock", std::process::id()))
}

/// The real stream loop, lossless, to a `glstream recv` child process that reads every frame.
fn end_to_end(
    renderer: &mut Renderer,
    options: &RenderOptions,
    transport: BenchTransport,
    warmup: u64,
    frames: u64,
) -> Result<Sample> {
    let total = warmup + frames;
    let config = ServeConfig {
        render: options.clone(),
        transport: match transport {
            BenchTransport::Tcp => Transport::Tcp(([127, 0, 0, 1], 0).into()),
            BenchTransport::Unix => Transport::Unix(unix_socket_path()),
        },
        max_clients: 1,
        header: HeaderMode::Blender,
        // Every frame must reach the consumer, or the fps would count frames nobody received.
        policy: Policy::Lossless,
        frames: Some(total),
        frame_interval: None,
        send_timeout: Duration::from_secs(30),
    };
    let bound = server::bind(&config.transport)?;
    let mut args = vec!["recv".to_string(), "-q".into()];
    args.extend(consumer_args(&bound)?);
    args.extend(["--frames".into(), total.to_string()]);
    args.extend(["--format".into(), options.format.name().to_string()]);
    let exe = std::env::current_exe().context("finding the glstream executable")?;

    let hub = Arc::new(Hub::new(options.pbo_count));
    let stop = Arc::new(AtomicBool::new(false));
    let mut consumer: Option<JoinHandle<std::io::Result<Output>>> = None;
    let on_ready = |_: Option<&str>| -> Result<()> {
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
        let (stop, hub) = (Arc::clone(&stop), Arc::clone(&hub));
        consumer = Some(thread::spawn(move || {
            let output = child.wait_with_output();
            if !matches!(&output, Ok(out) if out.status.success()) {
                stop.store(true, Ordering::SeqCst);
                hub.shutdown();
            }
            output
        }));
        Ok(())
    };
    let mut window: Option<(Window, Progress)> = None;
    let mut allocs_end = None;
    let on_frame = |progress: &Progress| {
        // The window also waits for the first frame sent: until then the accept thread may still
        // be logging the client and spawning its writer, which allocates once, not per frame.
        if window.is_none() && progress.frames >= warmup && progress.send > Duration::ZERO {
            window = Some((Window::open(), *progress));
        }
        if progress.frames == total {
            allocs_end = Some(Snapshot::now());
        }
    };
    let streamed = serve::stream(
        &config,
        renderer,
        bound,
        Arc::clone(&hub),
        &stop,
        on_ready,
        on_frame,
    );
    let ended = Instant::now();
    if streamed.is_err() {
        // Let the writer close the socket so the consumer ends and can be waited for.
        hub.shutdown();
    }
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
    let (window, at_start) = window.context("no frame was measured (warm-up covers the run)")?;
    let frames = total - at_start.frames;
    if frames == 0 {
        bail!("no frame was measured: the first frame was sent only at the end");
    }
    let allocs_end = allocs_end.context("the last frame was not seen")?;
    let stages = &report.stages;
    let mut stage_ms = [None; STAGES.len()];
    for (slot, (now, then)) in [
        (0, (stages.render, at_start.stages.render)),
        (2, (stages.retract, at_start.stages.retract)),
        (3, (stages.readback, at_start.stages.readback)),
        (4, (stages.wait_and_map, at_start.stages.wait_and_map)),
        (5, (stages.publish, at_start.stages.publish)),
        (6, (report.send, at_start.send)),
    ] {
        stage_ms[slot] = Some(per_frame_ms(now.saturating_sub(then), frames));
    }
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

fn fps(frames: u64, elapsed: Duration) -> f64 {
    frames as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn per_frame_ms(total: Duration, frames: u64) -> f64 {
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

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Medians per configuration, and the headline figures.
struct ConfigSummary {
    config: Config,
    fps: f64,
    fps_runs: Vec<f64>,
    stage_ms: [Option<f64>; STAGES.len()],
    allocs_per_frame: f64,
    rss_kib: (u64, u64),
    /// Median CPU ms per frame: this process, and the consumer (e2e).
    cpu_ms: (f64, Option<f64>),
}

struct Summary {
    width_px: u32,
    height_px: u32,
    scene: String,
    renderer: String,
    frames: u64,
    warmup: u64,
    repeats: usize,
    configs: Vec<ConfigSummary>,
    /// Allocations in every measured window together.
    allocations: u64,
    /// Resident memory when the first window opened and when the last closed.
    rss_kib: (u64, u64),
}

impl Summary {
    fn new(plan: &Plan, samples: &[Vec<Sample>], renderer: String) -> Self {
        let configs = plan
            .configs
            .iter()
            .zip(samples)
            .map(|(config, runs)| {
                let mut stage_ms = [None; STAGES.len()];
                for (i, stage) in stage_ms.iter_mut().enumerate() {
                    if runs.iter().any(|s| s.stage_ms[i].is_some()) {
                        *stage = Some(median(runs.iter().filter_map(|s| s.stage_ms[i])));
                    }
                }
                let allocations: u64 = runs.iter().map(|s| s.allocations).sum();
                let frames: u64 = runs.iter().map(|s| s.frames).sum();
                ConfigSummary {
                    config: *config,
                    fps: median(runs.iter().map(|s| s.fps)),
                    fps_runs: runs.iter().map(|s| s.fps).collect(),
                    stage_ms,
                    allocs_per_frame: allocations as f64 / frames.max(1) as f64,
                    cpu_ms: (
                        median(runs.iter().map(|s| s.cpu_ms.0)),
                        runs.iter()
                            .any(|s| s.cpu_ms.1.is_some())
                            .then(|| median(runs.iter().filter_map(|s| s.cpu_ms.1))),
                    ),
                    rss_kib: (
                        runs.iter().map(|s| s.rss_kib.0).min().unwrap_or(0),
                        runs.iter().map(|s| s.rss_kib.1).max().unwrap_or(0),
                    ),
                }
            })
            .collect();
        let all = samples.iter().flatten();
        let first = samples.first().and_then(|runs| runs.first());
        let last = samples
            .iter()
            .filter_map(|runs| runs.last())
            .next_back()
            .map_or(0, |s| s.rss_kib.1);
        Self {
            width_px: plan.render.width_px,
            height_px: plan.render.height_px,
            scene: match &plan.render.scene.source {
                SceneSource::Cube => "cube".into(),
                SceneSource::Pattern => "pattern".into(),
                SceneSource::Shader(path) | SceneSource::Gltf(path) => path.display().to_string(),
            },
            renderer,
            frames: plan.frames,
            warmup: plan.warmup,
            repeats: plan.repeats,
            configs,
            allocations: all.map(|s| s.allocations).sum(),
            rss_kib: (first.map_or(0, |s| s.rss_kib.0), last),
        }
    }

    /// The fastest configuration of a mode.
    fn best(&self, wanted: fn(Mode) -> bool) -> Option<&ConfigSummary> {
        self.configs
            .iter()
            .filter(|c| wanted(c.config.mode))
            .max_by(|a, b| a.fps.total_cmp(&b.fps))
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "glstream bench: {}x{} {}, {} | {} frames (+{} warm-up) x {} runs, medians",
            self.width_px,
            self.height_px,
            self.scene,
            self.renderer,
            self.frames,
            self.warmup,
            self.repeats
        );
        let _ = write!(
            out,
            "{:<9} {:>4} {:<9} {:>8} {:>8}",
            "mode", "PBOs", "transport", "fps", "ms/frame"
        );
        for stage in STAGES {
            let _ = write!(out, " {stage:>8}");
        }
        let _ = writeln!(out, " {:>8} {:>8} {:>8}", "cpu", "recv cpu", "allocs/f");
        for c in &self.configs {
            let pbos = match c.config.mode {
                Mode::Render => "-".to_string(),
                _ => c.config.pbo_count.to_string(),
            };
            let _ = write!(
                out,
                "{:<9} {:>4} {:<9} {:>8.1} {:>8.2}",
                c.config.mode_name(),
                pbos,
                c.config.transport_name(),
                c.fps,
                1e3 / c.fps.max(1e-9)
            );
            for ms in c.stage_ms {
                match ms {
                    Some(ms) => {
                        let _ = write!(out, " {ms:>8.2}");
                    }
                    None => {
                        let _ = write!(out, " {:>8}", "-");
                    }
                }
            }
            let recv_cpu = c.cpu_ms.1.map_or("-".to_string(), |ms| format!("{ms:.2}"));
            let _ = writeln!(
                out,
                " {:>8.2} {recv_cpu:>8} {:>8}",
                c.cpu_ms.0, c.allocs_per_frame
            );
        }
        let render = self.best(|m| m == Mode::Render).map_or(0.0, |c| c.fps);
        let readback = self.best(|m| m == Mode::Readback);
        let e2e = self.best(|m| matches!(m, Mode::EndToEnd(_)));
        let _ = write!(out, "render {render:.1} fps");
        if let Some(r) = readback {
            let _ = write!(
                out,
                " | readback {:.1} fps ({} PBOs)",
                r.fps, r.config.pbo_count
            );
        }
        if let Some(e) = e2e {
            let _ = write!(
                out,
                " | e2e {:.1} fps ({} PBOs, {}) = {:.2} x render",
                e.fps,
                e.config.pbo_count,
                e.config.transport_name(),
                e.fps / render.max(1e-9)
            );
        }
        let _ = writeln!(
            out,
            " | {} allocations in measured frames | RSS {} -> {} KiB",
            self.allocations, self.rss_kib.0, self.rss_kib.1
        );
        out
    }

    fn json(&self) -> String {
        let render = self.best(|m| m == Mode::Render).map_or(0.0, |c| c.fps);
        let readback = self.best(|m| m == Mode::Readback);
        let e2e = self.best(|m| matches!(m, Mode::EndToEnd(_)));
        let frames: u64 = self.frames * self.repeats as u64 * self.configs.len() as u64;
        let mut out = String::from("{");
        let _ = write!(
            out,
            "\"width\":{},\"height\":{},\"scene\":{},\"renderer\":{},\"frames\":{},\"warmup\":{},\"repeats\":{},",
            self.width_px,
            self.height_px,
            json_string(&self.scene),
            json_string(&self.renderer),
            self.frames,
            self.warmup,
            self.repeats
        );
        let _ = write!(
            out,
            "\"render_fps\":{:.2},\"readback_fps\":{:.2},\"readback_pbo_count\":{},\"e2e_fps\":{:.2},\"e2e_pbo_count\":{},\"e2e_transport\":{},\"e2e_over_render\":{:.3},",
            render,
            readback.map_or(0.0, |c| c.fps),
            readback.map_or(0, |c| c.config.pbo_count),
            e2e.map_or(0.0, |c| c.fps),
            e2e.map_or(0, |c| c.config.pbo_count),
            json_string(e2e.map_or("-", |c| c.config.transport_name())),
            e2e.map_or(0.0, |c| c.fps) / render.max(1e-9),
        );
        let _ = write!(
            out,
            "\"allocs_per_frame\":{},\"allocations\":{},\"rss_kib_start\":{},\"rss_kib_end\":{},\"configs\":[",
            self.allocations as f64 / frames.max(1) as f64,
            self.allocations,
            self.rss_kib.0,
            self.rss_kib.1
        );
        for (i, c) in self.configs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let runs: Vec<String> = c.fps_runs.iter().map(|f| format!("{f:.2}")).collect();
            let _ = write!(
                out,
                "{{\"mode\":{},\"pbo_count\":{},\"transport\":{},\"fps\":{:.2},\"fps_runs\":[{}],\"allocs_per_frame\":{},\"rss_kib_start\":{},\"rss_kib_end\":{},\"cpu_ms\":{:.3},\"consumer_cpu_ms\":{},\"ms\":{{",
                json_string(c.config.mode_name()),
                c.config.pbo_count,
                json_string(c.config.transport_name()),
                c.fps,
                runs.join(","),
                c.allocs_per_frame,
                c.rss_kib.0,
                c.rss_kib.1,
                c.cpu_ms.0,
                c.cpu_ms
                    .1
                    .map_or("null".to_string(), |ms| format!("{ms:.3}")),
            );
            let stages: Vec<String> = STAGES
                .iter()
                .zip(c.stage_ms)
                .filter_map(|(name, ms)| ms.map(|ms| format!("\"{name}\":{ms:.3}")))
                .collect();
            let _ = write!(out, "{}}}}}", stages.join(","));
        }
        out.push_str("]}");
        out
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::{json_string, median};

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median([]), 0.0);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_string("x\ny"), r#""x\u000ay""#);
    }
}
