//! `/metrics`: the stream's counters and stage histograms as Prometheus (OpenMetrics) text.

use super::*;

/// `/metrics` as read at one scrape. Names (prefix `glstream_`):
/// - `frames_rendered_total`: frames the render loop drew;
/// - `bytes_sent_total`: bytes delivered to every consumer, headers included;
/// - `clients_connected{output}`, `clients_dropped_total{output}` (cut off by a timeout or a
///   failure), `clients_refused_total{output}` (`--max-clients`), `frames_sent_total{output}`,
///   `frames_skipped_total{output}` (latest-policy consumers behind or throttled),
///   `frames_missed_total{output}` (frames a viewer was due but missed, its connection busy),
///   `output_bytes_sent_total{output}`;
/// - `stage_seconds{stage}`: histograms of `render`, `readback`, `send` (one frame to one
///   consumer) and `encode` (one JPEG for the viewers).
#[derive(Debug)]
pub(super) struct Metrics {
    pub(super) frames_rendered: u64,
    pub(super) bytes_sent: u64,
    pub(super) outputs: Vec<OutputTotals>,
    pub(super) stages: Vec<(&'static str, HistogramSnapshot)>,
}

impl Metrics {
    pub(super) fn per_output(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        metric_type: MetricType,
        value: impl Fn(&OutputTotals) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
        for output in &self.outputs {
            let labels = [("output", output.output.as_str())];
            let family = metric.encode_family(&labels)?;
            match metric_type {
                MetricType::Gauge => ConstGauge::new(value(output) as i64).encode(family)?,
                _ => ConstCounter::new(value(output)).encode(family)?,
            }
        }
        Ok(())
    }
}

impl prometheus_client::collector::Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        ConstCounter::new(self.frames_rendered).encode(encoder.encode_descriptor(
            "frames_rendered",
            "Frames the render loop drew.",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(self.bytes_sent).encode(encoder.encode_descriptor(
            "bytes_sent",
            "Bytes delivered to all consumers, headers included.",
            None,
            MetricType::Counter,
        )?)?;
        self.per_output(
            &mut encoder,
            "clients_connected",
            "Consumers connected now.",
            MetricType::Gauge,
            |o| o.connected,
        )?;
        self.per_output(
            &mut encoder,
            "clients_dropped",
            "Consumers cut off (send timeout or failure).",
            MetricType::Counter,
            |o| o.dropped,
        )?;
        self.per_output(
            &mut encoder,
            "clients_refused",
            "Consumers turned away (--max-clients).",
            MetricType::Counter,
            |o| o.refused,
        )?;
        self.per_output(
            &mut encoder,
            "frames_sent",
            "Frames delivered, summed over consumers.",
            MetricType::Counter,
            |o| o.frames,
        )?;
        self.per_output(
            &mut encoder,
            "frames_skipped",
            "Frames latest-policy consumers skipped (behind, or throttled to --preview-fps).",
            MetricType::Counter,
            |o| o.skipped,
        )?;
        self.per_output(
            &mut encoder,
            "frames_missed",
            "Frames a viewer was due but missed because its connection was still writing the \
             one before (at most one per --preview-fps interval).",
            MetricType::Counter,
            |o| o.missed,
        )?;
        self.per_output(
            &mut encoder,
            "output_bytes_sent",
            "Bytes delivered by this output.",
            MetricType::Counter,
            |o| o.bytes,
        )?;
        let mut metric = encoder.encode_descriptor(
            "stage",
            "Time per stage of a frame: render, readback, send (to one consumer), encode (JPEG).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (stage, histogram) in &self.stages {
            let labels = [("stage", *stage)];
            metric
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    histogram.sum_s,
                    histogram.count,
                    &histogram.buckets,
                    None,
                )?;
        }
        Ok(())
    }
}
