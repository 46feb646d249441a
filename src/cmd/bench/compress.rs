//! `glstream bench --compress`: what each codec of `--compress` makes of the scene's frames.
//!
//! Frames are rendered and read back as the server does (one at a time: nothing renders while a
//! codec is timed), and each frame is handed, while its lease is held, to one [`Encoder`] per
//! codec: the server's encode-once stage itself, cutting
//! frames into `--compress-threads` strips encoded on a pool of as many threads. The encoded
//! frame's v2 header is then read back as a consumer reads it and the frame decoded with
//! [`codec::decode_frame`] on the same pool, as `recv` decodes. Lossless codecs must give back
//! every byte (the bench fails otherwise); JPEG's error is reported as PSNR.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::cli::BenchArgs;
use crate::codec::{self, CODECS, Compress, Layout};
use crate::format::{Format, FrameShape};
use crate::gl::readback::{FrameLease, FrameMeta};
use crate::render::{self, RenderOptions, Renderer};
use crate::stream::encode::{Encoder, Target};
use crate::stream::hub::Frame;
use crate::stream::metrics::StageHistogram;
use crate::stream::protocol::{self, HeaderMode};

/// Parses `--compress` of the bench: codecs as the server takes them, or `all`.
pub fn codecs(list: &[String]) -> Result<Vec<Compress>> {
    let mut codecs = Vec::new();
    for item in list {
        if item == "all" {
            codecs.extend(CODECS.into_iter().map(Compress::new));
        } else {
            codecs.push(
                item.parse::<Compress>()
                    .map_err(|e| anyhow!("--compress {item}: {e}"))?,
            );
        }
    }
    let mut seen = Vec::new();
    codecs.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    Ok(codecs)
}

/// One codec's measurements, summed over the measured frames.
struct Run {
    compress: Compress,
    encoder: Arc<Encoder>,
    ratio_sum: f64,
    encoded_bytes: u64,
    encode: Duration,
    decode: Duration,
    /// Squared error and the samples it is over (lossy codecs).
    squared_error: f64,
    samples: u64,
}

/// Renders `--warmup` + `--frames` frames and measures every codec on each; prints the table
/// and one JSON line.
pub fn run(args: &BenchArgs, render_options: &RenderOptions) -> Result<()> {
    let list = codecs(&args.compress)?;
    let threads = args.compress_threads()?;
    let shape = render_options.shape();
    for compress in &list {
        compress.codec.check_format(shape.format)?;
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("encode-{i}"))
            .build()
            .context("starting the encoding threads")?,
    );
    let mut runs = list
        .iter()
        .map(|&compress| {
            let encoder =
                Encoder::new(Target::Strips(compress), shape, threads, Arc::clone(&pool))?;
            Ok(Run {
                compress,
                encoder: Arc::new(encoder),
                ratio_sum: 0.0,
                encoded_bytes: 0,
                encode: Duration::ZERO,
                decode: Duration::ZERO,
                squared_error: 0.0,
                samples: 0,
            })
        })
        .collect::<Result<Vec<_>, codec::CodecError>>()?;

    let context = render::context(render_options)?;
    let mut renderer = Renderer::new(&context, render_options)?;
    let renderer_name = renderer.context_info().renderer.clone();
    let times = StageHistogram::default();
    let mut decoded = vec![0u8; shape.frame_bytes() as usize];
    let total = args.warmup + args.frames;
    let mut measure = |lease: FrameLease<'_>| -> Result<()> {
        let measured = lease.frame_index() >= args.warmup;
        for run in &mut runs {
            measure_one(run, &pool, &shape, &lease, &times, &mut decoded, measured)?;
        }
        Ok(())
    };
    for frame in 0..total {
        renderer.render(frame);
        renderer.submit(FrameMeta {
            sequence: frame,
            frame_index: frame,
            timestamp_ns: 0,
            request_id: 0,
        })?;
        // Each frame is finished before it is encoded: a frame still rasterizing on llvmpipe's
        // threads would take the cores from the encoder and its time would count as the codec's.
        if let Some(lease) = renderer.ring.complete_oldest()? {
            measure(lease)?;
        }
    }

    let layout = Layout::new(shape.height_px, threads);
    let scene = super::report::scene_name(render_options);
    print!(
        "{}",
        table(&runs, &shape, &scene, &renderer_name, args, threads, layout)
    );
    println!(
        "{}",
        json(&runs, &shape, &scene, &renderer_name, args, threads, layout)
    );
    Ok(())
}

/// Encodes `lease` with `run`'s codec, decodes it back and checks it; adds to the sums when
/// `measured`.
fn measure_one(
    run: &mut Run,
    pool: &rayon::ThreadPool,
    shape: &FrameShape,
    lease: &FrameLease<'_>,
    times: &StageHistogram,
    decoded: &mut [u8],
    measured: bool,
) -> Result<()> {
    let name = run.compress;
    let index = lease.frame_index();
    let started = Instant::now();
    let encoded = run
        .encoder
        .get(lease, times)
        .map_err(|e| anyhow!("{name}: frame {index}: {e}"))?;
    let encode = started.elapsed();
    // Read back as a consumer reads it: the header says codec, layout and strip lengths.
    let header = protocol::decode(HeaderMode::Glstream, &encoded.header, shape.format)
        .with_context(|| format!("{name}: frame {index}: its own header"))?;
    let encoding = header
        .encoding
        .with_context(|| format!("{name}: frame {index}: a header without a codec"))?;
    let started = Instant::now();
    pool.install(|| {
        codec::decode_frame(
            encoding.codec,
            encoding.layout,
            header.width_px,
            header.height_px,
            header.format,
            protocol::strip_lengths(&encoded.header),
            &encoded.payload,
            decoded,
        )
    })
    .with_context(|| format!("{name}: frame {index} does not decode"))?;
    let decode = started.elapsed();
    let raw = lease.bytes();
    if name.codec.is_lossless()
        && let Some(at) = raw.iter().zip(decoded.iter()).position(|(a, b)| a != b)
    {
        bail!(
            "{name}: frame {index} decodes to other bytes than were encoded (first at byte {at} \
             of {}: {} instead of {})",
            raw.len(),
            decoded[at],
            raw[at]
        );
    }
    if !measured {
        return Ok(());
    }
    let wire = (encoded.header.len() + encoded.payload.len()) as u64;
    run.ratio_sum += raw.len() as f64 / wire as f64;
    run.encoded_bytes += wire;
    run.encode += encode;
    run.decode += decode;
    if !name.codec.is_lossless() {
        let (error, samples) = squared_error(raw, decoded, shape.format);
        run.squared_error += error;
        run.samples += samples;
    }
    Ok(())
}

/// The squared error of the colour (or grey) samples, alpha left out, and how many there are.
fn squared_error(raw: &[u8], decoded: &[u8], format: Format) -> (f64, u64) {
    let alpha = matches!(format, Format::Rgba8 | Format::Bgra8);
    let mut error = 0u64;
    let mut samples = 0u64;
    for (i, (a, b)) in raw.iter().zip(decoded).enumerate() {
        if alpha && i % 4 == 3 {
            continue;
        }
        let d = u64::from(a.abs_diff(*b));
        error += d * d;
        samples += 1;
    }
    (error as f64, samples)
}

impl Run {
    fn ratio(&self, frames: u64) -> f64 {
        self.ratio_sum / frames.max(1) as f64
    }

    fn encode_ms(&self, frames: u64) -> f64 {
        self.encode.as_secs_f64() * 1e3 / frames.max(1) as f64
    }

    fn decode_ms(&self, frames: u64) -> f64 {
        self.decode.as_secs_f64() * 1e3 / frames.max(1) as f64
    }

    /// PSNR in dB over the colour samples (lossy codecs; `None` for lossless).
    fn psnr_db(&self) -> Option<f64> {
        if self.compress.codec.is_lossless() {
            return None;
        }
        let mse = self.squared_error / self.samples.max(1) as f64;
        Some(if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (255.0f64 * 255.0 / mse).log10()
        })
    }
}

fn fps(ms: f64) -> f64 {
    1e3 / ms.max(1e-9)
}

fn table(
    runs: &[Run],
    shape: &FrameShape,
    scene: &str,
    renderer: &str,
    args: &BenchArgs,
    threads: usize,
    layout: Layout,
) -> String {
    let frames = args.frames;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "glstream bench --compress: {}x{} {} {}, {} | {} frames (+{} warm-up), {} threads, {} \
         strips of {} rows, raw {:.2} MB/frame, means",
        shape.width_px,
        shape.height_px,
        shape.format.name(),
        scene,
        renderer,
        frames,
        args.warmup,
        threads,
        layout.strips,
        layout.rows_per_strip,
        shape.frame_bytes() as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "{:<9} {:>8} {:>9} {:>9} {:>10} {:>9} {:>10} {:>12}",
        "codec", "ratio", "MB/frame", "encode ms", "encode fps", "decode ms", "decode fps", "check"
    );
    for run in runs {
        let (encode_ms, decode_ms) = (run.encode_ms(frames), run.decode_ms(frames));
        let check = match run.psnr_db() {
            None => "exact".to_string(),
            Some(db) => format!("PSNR {db:.1} dB"),
        };
        let _ = writeln!(
            out,
            "{:<9} {:>8.2} {:>9.3} {:>9.2} {:>10.1} {:>9.2} {:>10.1} {:>12}",
            run.compress.to_string(),
            run.ratio(frames),
            run.encoded_bytes as f64 / frames.max(1) as f64 / 1e6,
            encode_ms,
            fps(encode_ms),
            decode_ms,
            fps(decode_ms),
            check
        );
    }
    out
}

fn json(
    runs: &[Run],
    shape: &FrameShape,
    scene: &str,
    renderer: &str,
    args: &BenchArgs,
    threads: usize,
    layout: Layout,
) -> String {
    let frames = args.frames;
    let round = |value: f64, digits: i32| {
        let scale = 10f64.powi(digits);
        (value * scale).round() / scale
    };
    let codecs: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            let (encode_ms, decode_ms) = (run.encode_ms(frames), run.decode_ms(frames));
            serde_json::json!({
                "codec": run.compress.to_string(),
                "lossless": run.compress.codec.is_lossless(),
                "ratio": round(run.ratio(frames), 3),
                "encoded_bytes_per_frame": run.encoded_bytes / frames.max(1),
                "encode_ms": round(encode_ms, 3),
                "encode_fps": round(fps(encode_ms), 2),
                "decode_ms": round(decode_ms, 3),
                "decode_fps": round(fps(decode_ms), 2),
                "encodes": run.encoder.encodes(),
                "psnr_db": run.psnr_db().filter(|db| db.is_finite()).map(|db| round(db, 2)),
            })
        })
        .collect();
    serde_json::json!({
        "width": shape.width_px,
        "height": shape.height_px,
        "format": shape.format.name(),
        "scene": scene,
        "renderer": renderer,
        "frames": frames,
        "warmup": args.warmup,
        "compress_threads": threads,
        "strips": layout.strips,
        "rows_per_strip": layout.rows_per_strip,
        "raw_bytes_per_frame": shape.frame_bytes(),
        "codecs": codecs,
    })
    .to_string()
}
