//! Counters a running stream keeps for whoever reports on it (the HTTP output's `/metrics`,
//! its page, the once-a-second log line): per-output client counts, drops and skips, and
//! per-stage time histograms. Everything here is atomics behind fixed-size arrays, so the render
//! loop and the writers record without locking or allocating; only registering an output or a
//! client takes a lock.
//!
//! Nothing here knows Prometheus: the HTTP output turns [`OutputRegistry::snapshot`] and
//! [`StageHistogram::snapshot`] into its exposition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::hub::ClientId;

/// Upper bounds of the histogram buckets, in seconds (a last, unbounded one follows): from half
/// a millisecond (a small frame's send) to a second (a huge frame drawn by llvmpipe).
pub const BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5,
];

/// Durations of one stage, in [`BUCKETS_S`] buckets.
#[derive(Debug, Default)]
pub struct StageHistogram {
    /// Per bucket, not cumulative; the last counts what is above every bound.
    counts: [AtomicU64; BUCKETS_S.len() + 1],
    sum_ns: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Seconds summed over every observation.
    pub sum_s: f64,
    /// Observations.
    pub count: u64,
    /// `(upper bound in seconds, observations above the previous bound and at or below this
    /// one)`, ending with `f64::MAX` for the unbounded bucket: the shape `prometheus-client`'s
    /// encoder takes (it sums the counts and writes `f64::MAX` as `+Inf`).
    pub buckets: Vec<(f64, u64)>,
}

impl StageHistogram {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = BUCKETS_S
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS_S.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(duration.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = BUCKETS_S
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(&self.counts)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: buckets.iter().map(|(_, count)| count).sum(),
            buckets,
        }
    }
}

/// Time per stage of a frame's life.
#[derive(Debug, Default)]
pub struct StageTimes {
    /// Drawing a frame (the scene's draw calls; llvmpipe rasterizes here).
    pub render: StageHistogram,
    /// Reading it back: `glReadPixels` into the PBO, the fence wait and the map.
    pub readback: StageHistogram,
    /// One frame to one consumer.
    pub send: StageHistogram,
    /// Flipping and JPEG-encoding one frame for the HTTP viewers.
    pub encode: StageHistogram,
}

impl StageTimes {
    /// Every stage with its name, as `/metrics` labels them.
    pub fn named(&self) -> [(&'static str, &StageHistogram); 4] {
        [
            ("render", &self.render),
            ("readback", &self.readback),
            ("send", &self.send),
            ("encode", &self.encode),
        ]
    }
}

/// The consumers of one output.
#[derive(Debug, Default)]
pub struct OutputCounters {
    /// Consumers registered now.
    pub connected: AtomicU64,
    /// Consumers that were cut off (a send timeout or another failure; hanging up is not one).
    pub dropped: AtomicU64,
    /// Consumers turned away (`--max-clients`).
    pub refused: AtomicU64,
    /// Frames a consumer of the latest policy skipped because it was behind or throttled.
    pub skipped: AtomicU64,
    /// Frames a paced consumer (an HTTP viewer) was due but missed because it was still busy
    /// with the one before: what a viewer calls a dropped frame. The frames a viewer skips on
    /// purpose to keep to its pace are in `skipped`, not here.
    pub missed: AtomicU64,
    /// Frames delivered, summed over consumers.
    pub frames: AtomicU64,
    /// Bytes delivered, headers included.
    pub bytes: AtomicU64,
}

/// One output's counters as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTotals {
    /// The output's name (`tcp`, `http`, ...).
    pub output: String,
    /// See [`OutputCounters::connected`].
    pub connected: u64,
    /// See [`OutputCounters::dropped`].
    pub dropped: u64,
    /// See [`OutputCounters::refused`].
    pub refused: u64,
    /// See [`OutputCounters::skipped`].
    pub skipped: u64,
    /// See [`OutputCounters::missed`].
    pub missed: u64,
    /// See [`OutputCounters::frames`].
    pub frames: u64,
    /// See [`OutputCounters::bytes`].
    pub bytes: u64,
}

/// The counters of every output, by name, and which output each registered client belongs to.
#[derive(Debug, Default)]
pub struct OutputRegistry {
    outputs: Mutex<Vec<(String, Arc<OutputCounters>)>>,
    clients: Mutex<Vec<(ClientId, Arc<OutputCounters>)>>,
}

impl OutputRegistry {
    /// The counters of the output called `name`, made on first use.
    pub fn output(&self, name: &str) -> Arc<OutputCounters> {
        let mut outputs = self.outputs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counters)) = outputs.iter().find(|(n, _)| n == name) {
            return Arc::clone(counters);
        }
        let counters = Arc::new(OutputCounters::default());
        outputs.push((name.to_string(), Arc::clone(&counters)));
        counters
    }

    /// Counts client `id` as a consumer of `counters`' output.
    pub(crate) fn attach(&self, id: ClientId, counters: Arc<OutputCounters>) {
        counters.connected.fetch_add(1, Ordering::Relaxed);
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, counters));
    }

    /// The counters of the output client `id` belongs to, if it was registered through
    /// [`super::output::Feed::register`].
    pub fn of(&self, id: ClientId) -> Option<Arc<OutputCounters>> {
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, counters)| Arc::clone(counters))
    }

    /// Client `id` has left.
    pub(crate) fn detach(&self, id: ClientId) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = clients.iter().position(|(c, _)| *c == id) {
            let (_, counters) = clients.swap_remove(i);
            counters.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Every output's counters now, in the order the outputs first registered.
    pub fn snapshot(&self) -> Vec<OutputTotals> {
        let outputs = self.outputs.lock().unwrap_or_else(PoisonError::into_inner);
        outputs
            .iter()
            .map(|(name, c)| OutputTotals {
                output: name.clone(),
                connected: c.connected.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
                refused: c.refused.load(Ordering::Relaxed),
                skipped: c.skipped.load(Ordering::Relaxed),
                missed: c.missed.load(Ordering::Relaxed),
                frames: c.frames.load(Ordering::Relaxed),
                bytes: c.bytes.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_count_each_range_and_end_unbounded() {
        let h = StageHistogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.first(), Some(&(0.0005, 1)));
        assert_eq!(s.buckets[3], (0.005, 1));
        assert_eq!(s.buckets.last(), Some(&(f64::MAX, 1)));
        assert!((s.sum_s - 10.0033).abs() < 1e-9);
    }
}
