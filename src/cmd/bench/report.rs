//! The bench's results: medians per configuration, a table for people and one JSON line for
//! scripts (written with serde_json).

use std::fmt::Write as _;

use super::measure::{STAGES, Sample};
use super::plan::{Config, Mode, Plan};
use crate::render::RenderOptions;
use crate::scene::SceneSource;

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The scene as the tables name it: `cube`, `pattern`, or the file.
pub fn scene_name(render: &RenderOptions) -> String {
    match &render.scene.source {
        SceneSource::Cube => "cube".into(),
        SceneSource::Pattern => "pattern".into(),
        SceneSource::Shader(path) | SceneSource::Gltf(path) => path.display().to_string(),
    }
}

/// Medians per configuration, and the headline figures.
pub struct ConfigSummary {
    config: Config,
    fps: f64,
    fps_runs: Vec<f64>,
    stage_ms: [Option<f64>; STAGES.len()],
    allocs_per_frame: f64,
    rss_kib: (u64, u64),
    /// Median CPU ms per frame: this process, and the consumer (e2e).
    cpu_ms: (f64, Option<f64>),
}

/// Everything the bench measured, summarised.
pub struct Summary {
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
    /// Medians of `samples` (one list per configuration of `plan`).
    pub fn new(plan: &Plan, samples: &[Vec<Sample>], renderer: String) -> Self {
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
            scene: scene_name(&plan.render),
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

    /// The table for people.
    pub fn table(&self) -> String {
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
                c.cpu_ms.0,
                // Whole numbers as they are (the socket transports' 0); others to two places.
                if c.allocs_per_frame.fract() == 0.0 {
                    format!("{}", c.allocs_per_frame)
                } else {
                    format!("{:.2}", c.allocs_per_frame)
                }
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
            " | {} allocations in measured frames, {} in housekeeping (sweeps for dead iceoryx2 \
             nodes, whenever load makes them run) | RSS {} -> {} KiB",
            self.allocations,
            crate::alloc_count::housekeeping_allocations(),
            self.rss_kib.0,
            self.rss_kib.1
        );
        out
    }

    /// One JSON object with the headline figures and every configuration's.
    pub fn json(&self) -> String {
        let render = self.best(|m| m == Mode::Render).map_or(0.0, |c| c.fps);
        let readback = self.best(|m| m == Mode::Readback);
        let e2e = self.best(|m| matches!(m, Mode::EndToEnd(_)));
        let frames: u64 = self.frames * self.repeats as u64 * self.configs.len() as u64;
        let configs: Vec<serde_json::Value> = self
            .configs
            .iter()
            .map(|c| {
                let ms: serde_json::Map<String, serde_json::Value> = STAGES
                    .iter()
                    .zip(c.stage_ms)
                    .filter_map(|(name, ms)| ms.map(|ms| ((*name).to_string(), round(ms, 3))))
                    .collect();
                serde_json::json!({
                    "mode": c.config.mode_name(),
                    "pbo_count": c.config.pbo_count,
                    "transport": c.config.transport_name(),
                    "fps": round(c.fps, 2),
                    "fps_runs": c.fps_runs.iter().map(|f| round(*f, 2)).collect::<Vec<_>>(),
                    "allocs_per_frame": c.allocs_per_frame,
                    "rss_kib_start": c.rss_kib.0,
                    "rss_kib_end": c.rss_kib.1,
                    "cpu_ms": round(c.cpu_ms.0, 3),
                    "consumer_cpu_ms": c.cpu_ms.1.map(|ms| round(ms, 3)),
                    "ms": ms,
                })
            })
            .collect();
        serde_json::json!({
            "width": self.width_px,
            "height": self.height_px,
            "scene": self.scene,
            "renderer": self.renderer,
            "frames": self.frames,
            "warmup": self.warmup,
            "repeats": self.repeats,
            "render_fps": round(render, 2),
            "readback_fps": round(readback.map_or(0.0, |c| c.fps), 2),
            "readback_pbo_count": readback.map_or(0, |c| c.config.pbo_count),
            "e2e_fps": round(e2e.map_or(0.0, |c| c.fps), 2),
            "e2e_pbo_count": e2e.map_or(0, |c| c.config.pbo_count),
            "e2e_transport": e2e.map_or("-", |c| c.config.transport_name()),
            "e2e_over_render": round(e2e.map_or(0.0, |c| c.fps) / render.max(1e-9), 3),
            "allocs_per_frame": self.allocations as f64 / frames.max(1) as f64,
            "allocations": self.allocations,
            "housekeeping_allocations": crate::alloc_count::housekeeping_allocations(),
            "rss_kib_start": self.rss_kib.0,
            "rss_kib_end": self.rss_kib.1,
            "configs": configs,
        })
        .to_string()
    }
}

/// `value` rounded to `digits` decimals, as a JSON number.
fn round(value: f64, digits: i32) -> serde_json::Value {
    let scale = 10f64.powi(digits);
    serde_json::json!((value * scale).round() / scale)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median([]), 0.0);
    }
}
