//! The encode-once stage: every frame is encoded at most once per encoding, however many
//! consumers want it that way.
//!
//! An [`Encoder`] belongs to the [`Feed`] (one per codec and level, made when the first output
//! that asks for it starts). Consumers still take raw frames from the hub as every other
//! consumer does, and ask the encoder for the frame's encoding ([`Encoder::get`]): the first to
//! ask encodes it (its strips in parallel on the feed's worker pool) while any other waits for
//! that result, and later ones get it from a small cache keyed by the frame's sequence number.
//! For streams, a run-ahead thread ([`Encoder::run_ahead`]) takes each frame as soon as it is
//! published and encodes it, so that a consumer sending frame N overlaps with the encoding of
//! N + 1; it is a helper client of the hub (it never keeps a server busy by itself) and only
//! runs while a consumer of its encoding is connected ([`Encoder::demand`]).
//!
//! Outputs that send raw frames never touch any of this: `--compress` off costs nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use rayon::prelude::*;

use super::hub::{Frame, Hub, Policy};
use super::metrics::StageHistogram;
use super::protocol::{self, FrameInfo};
use crate::codec::{self, Codec, CodecError, Compress, Layout};
use crate::format::{Format, FrameShape};

/// What an encoder makes of each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `--compress`: the frame's rows in their own order, cut into strips, each an independent
    /// unit of the codec, with a glstream v2 header.
    Strips(Compress),
    /// A browser's view (`/stream.mjpg`): one JPEG of the whole frame, rows top-down, depth as
    /// 8-bit grey, at this quality.
    Preview {
        /// JPEG quality, 1 to 100.
        quality: u8,
    },
}

/// One frame, encoded.
#[derive(Debug, Default)]
pub struct Encoded {
    /// The frame's sequence number.
    pub sequence: u64,
    /// The glstream v2 header (empty for a preview).
    pub header: Vec<u8>,
    /// The encoded bytes: the strips back to back, or the preview's JPEG.
    pub payload: Vec<u8>,
    /// Each strip's encoding, reused from frame to frame.
    strips: Vec<Vec<u8>>,
    strip_lens: Vec<u32>,
    /// Top-down rows for a preview, reused.
    scratch: Vec<u8>,
}

enum Slot {
    /// Someone is encoding it; wait on `done`.
    Pending,
    Done(Arc<Encoded>),
    Failed(Arc<CodecError>),
}

struct Cache {
    /// Recently encoded frames, oldest first.
    entries: VecDeque<(u64, Slot)>,
    /// Encodings nobody holds any more, whose buffers the next frames reuse.
    spare: Vec<Encoded>,
}

/// Frames kept encoded: enough for consumers a few frames apart to share one encoding. One a
/// consumer asks for after it has gone is encoded again (correct, only slower).
const CACHE: usize = 8;

/// The encode-once stage for one [`Target`].
pub struct Encoder {
    target: Target,
    shape: FrameShape,
    layout: Layout,
    pool: Arc<rayon::ThreadPool>,
    cache: Mutex<Cache>,
    done: Condvar,
    /// Consumers of this encoding connected now.
    demand: AtomicUsize,
    /// Frames encoded so far.
    encodes: AtomicU64,
}

/// A consumer's way to its encoding: counted as demand while it lives (the run-ahead thread
/// encodes only while there is some), and timing each encoding it makes into the stream's
/// `encode` stage.
pub struct Encoding<'env> {
    encoder: Arc<Encoder>,
    times: &'env StageHistogram,
}

impl Encoding<'_> {
    /// `frame`, encoded (see [`Encoder::get`]).
    pub fn get<F: Frame>(&self, frame: &F) -> Result<Arc<Encoded>, Arc<CodecError>> {
        self.encoder.get(frame, self.times)
    }

    /// The encoder behind it.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
}

impl Drop for Encoding<'_> {
    fn drop(&mut self) {
        self.encoder.demand.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Encoder {
    /// An encoder of frames of `shape` for `target`, cutting frames into about `parts` strips
    /// encoded on `pool`. Fails, with one line, when the codec cannot carry the format.
    pub fn new(
        target: Target,
        shape: FrameShape,
        parts: usize,
        pool: Arc<rayon::ThreadPool>,
    ) -> Result<Self, CodecError> {
        let layout = match target {
            Target::Strips(compress) => {
                compress.codec.check_format(shape.format)?;
                Layout::new(shape.height_px, parts)
            }
            Target::Preview { .. } => Layout::new(shape.height_px, 1),
        };
        Ok(Self {
            target,
            shape,
            layout,
            pool,
            cache: Mutex::new(Cache {
                entries: VecDeque::with_capacity(CACHE + 1),
                spare: Vec::new(),
            }),
            done: Condvar::new(),
            demand: AtomicUsize::new(0),
            encodes: AtomicU64::new(0),
        })
    }

    /// What it makes.
    pub fn target(&self) -> Target {
        self.target
    }

    /// Frames encoded so far (each at most once while it is cached).
    pub fn encodes(&self) -> u64 {
        self.encodes.load(Ordering::Relaxed)
    }

    /// A consumer's handle on this encoding, counted as demand until it is dropped. Take it
    /// before the consumer's hub client is registered, so the run-ahead thread sees it when it
    /// wakes.
    pub fn demand<'env>(self: &Arc<Self>, times: &'env StageHistogram) -> Encoding<'env> {
        self.demand.fetch_add(1, Ordering::SeqCst);
        Encoding {
            encoder: Arc::clone(self),
            times,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `frame`, encoded: from the cache, from whoever is encoding it now, or encoded here (its
    /// time recorded in `times`).
    pub fn get<F: Frame>(
        &self,
        frame: &F,
        times: &StageHistogram,
    ) -> Result<Arc<Encoded>, Arc<CodecError>> {
        let sequence = frame.sequence();
        let mut cache = self.lock();
        loop {
            match cache.entries.iter().find(|(s, _)| *s == sequence) {
                Some((_, Slot::Done(encoded))) => return Ok(Arc::clone(encoded)),
                Some((_, Slot::Failed(error))) => return Err(Arc::clone(error)),
                Some((_, Slot::Pending)) => {
                    cache = self
                        .done
                        .wait(cache)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                None => break,
            }
        }
        // Claimed: others asking for it now wait for this encoding.
        cache.entries.push_back((sequence, Slot::Pending));
        while cache.entries.len() > CACHE {
            let Some(i) = cache
                .entries
                .iter()
                .position(|(_, slot)| !matches!(slot, Slot::Pending))
            else {
                break;
            };
            if let Some((_, Slot::Done(old))) = cache.entries.remove(i)
                && let Ok(old) = Arc::try_unwrap(old)
            {
                cache.spare.push(old);
            }
        }
        let mut encoded = cache.spare.pop().unwrap_or_default();
        drop(cache);
        let started = Instant::now();
        let result = self.encode(frame, &mut encoded);
        times.observe(started.elapsed());
        self.encodes.fetch_add(1, Ordering::Relaxed);
        let slot = match result {
            Ok(()) => Slot::Done(Arc::new(encoded)),
            Err(e) => {
                log::warn!("cannot encode frame {}: {e}", frame.frame_index());
                Slot::Failed(Arc::new(e))
            }
        };
        let mut cache = self.lock();
        let result = match &slot {
            Slot::Done(encoded) => Ok(Arc::clone(encoded)),
            Slot::Failed(error) => Err(Arc::clone(error)),
            Slot::Pending => unreachable!("set above"),
        };
        if let Some(entry) = cache.entries.iter_mut().find(|(s, _)| *s == sequence) {
            entry.1 = slot;
        }
        drop(cache);
        self.done.notify_all();
        result
    }

    fn encode<F: Frame>(&self, frame: &F, out: &mut Encoded) -> Result<(), CodecError> {
        out.sequence = frame.sequence();
        let shape = &self.shape;
        match self.target {
            Target::Strips(compress) => {
                let layout = self.layout;
                let stride = shape.stride_bytes() as usize;
                let bytes = frame.bytes();
                out.strips.resize_with(layout.strips as usize, Vec::new);
                self.pool.install(|| {
                    out.strips
                        .par_iter_mut()
                        .enumerate()
                        .try_for_each(|(i, strip)| {
                            let rows = layout.rows(i as u32, shape.height_px);
                            let start = i * layout.rows_per_strip as usize * stride;
                            let src = &bytes[start..start + rows as usize * stride];
                            codec::encode_strip(
                                compress,
                                shape.width_px,
                                rows,
                                shape.format,
                                src,
                                strip,
                            )
                        })
                })?;
                out.strip_lens.clear();
                out.payload.clear();
                for strip in &out.strips {
                    out.strip_lens.push(strip.len() as u32);
                    out.payload.extend_from_slice(strip);
                }
                let info = FrameInfo::new(*shape, frame.frame_index(), frame.timestamp_ns())
                    .answering(frame.request_id());
                protocol::encode_v2(
                    &info,
                    Some(compress.codec),
                    layout,
                    &out.strip_lens,
                    &mut out.header,
                )
                .map_err(|e| CodecError::Encode {
                    codec: compress.codec.name(),
                    why: e.to_string(),
                })
            }
            Target::Preview { quality } => {
                out.header.clear();
                preview_jpeg(
                    frame.bytes(),
                    shape,
                    quality,
                    &mut out.scratch,
                    &mut out.payload,
                )
            }
        }
    }

    /// The run-ahead thread's body: while a consumer of this encoding is connected, takes each
    /// frame from `hub` as a helper client (with `policy`, the stream's) and encodes it, timing
    /// each encoding into `times`; returns once the stream is over.
    pub fn run_ahead<F: Frame>(&self, hub: &Hub<F>, policy: Policy, times: &StageHistogram) {
        loop {
            if !hub.wait_consumers_and(&|| self.demand.load(Ordering::SeqCst) > 0) {
                return;
            }
            let id = hub.register_helper(policy);
            while let Some(frame) = hub.next_frame(id) {
                if self.demand.load(Ordering::SeqCst) == 0 {
                    break;
                }
                let _ = self.get(&frame, times);
                hub.sent(id, frame.sequence());
            }
            hub.deregister(id);
        }
    }
}

/// Encodes a frame as one JPEG with rows top-down, for a browser. A top-down frame of a colour
/// format is encoded straight from its bytes; otherwise the rows are flipped (and depth turned
/// into 8-bit grey) into `pixels` first.
pub fn preview_jpeg(
    frame: &[u8],
    shape: &FrameShape,
    quality: u8,
    pixels: &mut Vec<u8>,
    jpeg: &mut Vec<u8>,
) -> Result<(), CodecError> {
    use jpeg_encoder::ColorType;
    let (color, channels) = match shape.format {
        Format::Rgba8 => (ColorType::Rgba, 4),
        Format::Bgra8 => (ColorType::Bgra, 4),
        Format::Rgb8 => (ColorType::Rgb, 3),
        Format::Gray8 | Format::Depth32f => (ColorType::Luma, 1),
    };
    let width = shape.width_px as usize;
    let stride_in = width * shape.format.bytes_per_pixel() as usize;
    let source: &[u8] = if shape.top_down && shape.format != Format::Depth32f {
        frame
    } else {
        let stride_out = width * channels;
        pixels.clear();
        pixels.reserve(stride_out * shape.height_px as usize);
        let rows = frame.chunks_exact(stride_in);
        let rows: Box<dyn Iterator<Item = &[u8]>> = if shape.top_down {
            Box::new(rows)
        } else {
            Box::new(rows.rev())
        };
        for row in rows {
            if shape.format == Format::Depth32f {
                pixels.extend(row.chunks_exact(4).map(|b| {
                    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    (d.clamp(0.0, 1.0) * 255.0).round() as u8
                }));
            } else {
                pixels.extend_from_slice(row);
            }
        }
        pixels
    };
    jpeg.clear();
    let fail = |why: String| CodecError::Encode {
        codec: Codec::Jpeg.name(),
        why,
    };
    let (w, h) = (
        u16::try_from(shape.width_px).map_err(|_| fail("width over 65535".into()))?,
        u16::try_from(shape.height_px).map_err(|_| fail("height over 65535".into()))?,
    );
    jpeg_encoder::Encoder::new(&mut *jpeg, quality)
        .encode(source, w, h, color)
        .map_err(|e| fail(e.to_string()))
}
