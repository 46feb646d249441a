//! `glstream recv`: the reference consumer. It reads a stream the way a Blender consumer does,
//! validates every header, and reports frames, fps and MB/s; it can save PNGs along the way and
//! check the `pattern` scene's frame indices for order and drops.
//!
//! The payload buffer is allocated once and reused for every frame of the same size.
//!
//! With `--zmq-bind` / `--zmq-connect` it is the collector of a ZeroMQ stream instead: it takes
//! [header, payload] messages (the contract in `stream::zmq`) from any number of producers,
//! names saved files by frame index (so a render farm's output is one ordered sequence however
//! its frames arrived), and `--verify-pattern` tallies missing and duplicate indices rather than
//! order. It runs until `--frames` messages or a signal.

mod shm_subscriber;
mod zmq_receiver;

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::capture;
use crate::cli::{RecvArgs, seconds};
use crate::format::{Format, FrameShape};
use crate::pattern_code::decode_pattern;
use crate::stream::protocol::{self, HeaderMode, MAX_FRAME_BYTES};
use crate::stream::shm;
use shm_subscriber::ShmSubscriber;

/// A byte stream whose reads can be bounded in time: a socket, or for tests a byte slice.
pub trait Source: Read {
    /// Bounds each following read to `timeout`; `None` waits for ever.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Source for TcpStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl Source for UnixStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
}

/// A slice never blocks.
impl Source for &[u8] {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// Why `read_full` stopped short, and how many bytes it had by then.
#[derive(Debug)]
struct Short {
    got: usize,
    why: ShortWhy,
}

#[derive(Debug)]
enum ShortWhy {
    /// The stream ended.
    Ended,
    /// The frame's deadline passed.
    TimedOut,
    /// The read failed.
    Failed(io::Error),
}

/// Reads exactly `buf.len()` bytes before `deadline` (a deadline for the whole buffer, not per
/// read: each read may wait only for what is left of it); `Ok(false)` if the stream ended before
/// the first byte.
fn read_full(stream: &mut dyn Source, buf: &mut [u8], deadline: Instant) -> Result<bool, Short> {
    let mut filled = 0;
    while filled < buf.len() {
        let short = |why| Short { got: filled, why };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(short(ShortWhy::TimedOut));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| short(ShortWhy::Failed(e)))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(short(ShortWhy::Ended)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A socket read timeout is EAGAIN on Linux, ETIMEDOUT elsewhere.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(short(ShortWhy::TimedOut));
            }
            Err(e) => return Err(short(ShortWhy::Failed(e))),
        }
    }
    Ok(true)
}

/// The error for a frame that stopped short: how far it got, and why.
fn short_frame(frame: u64, timeout: Duration, short: Short, so_far: &str) -> anyhow::Error {
    match short.why {
        ShortWhy::TimedOut => anyhow::anyhow!(
            "frame {frame}: no complete frame within {} s: got {so_far}",
            timeout.as_secs_f64()
        ),
        ShortWhy::Ended => anyhow::anyhow!("frame {frame}: stream ended mid-frame: got {so_far}"),
        ShortWhy::Failed(e) => {
            anyhow::Error::new(e).context(format!("frame {frame}: read failed after {so_far}"))
        }
    }
}

/// Decodes compressed frames (a glstream v2 header names the codec) into a buffer reused from
/// frame to frame; uncompressed ones pass through.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    pixels: Vec<u8>,
}

impl FrameDecoder {
    /// The frame's pixels: `payload` itself, or its strips decoded. `header` is the whole
    /// header `decoded` came from (its strip table).
    pub fn decode<'a>(
        &'a mut self,
        decoded: &protocol::Decoded,
        header: &[u8],
        payload: &'a [u8],
    ) -> Result<&'a [u8]> {
        let Some(encoding) = decoded.encoding else {
            return Ok(payload);
        };
        // Bounded: the header's raw length is checked against the size, and the size against
        // the 1 GiB limit, before anything is allocated.
        let raw_len = decoded.raw_len();
        if raw_len > MAX_FRAME_BYTES {
            bail!("{raw_len} bytes decoded would be over the 1 GiB limit");
        }
        self.pixels.resize(raw_len as usize, 0);
        crate::codec::decode_frame(
            encoding.codec,
            encoding.layout,
            decoded.width_px,
            decoded.height_px,
            decoded.format,
            protocol::strip_lengths(header),
            payload,
            &mut self.pixels,
        )
        .with_context(|| format!("cannot decode its {}", encoding.codec))?;
        Ok(&self.pixels)
    }
}

/// What a stream delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Whole frames read.
    pub frames: u64,
    /// Bytes read, headers included.
    pub bytes: u64,
    /// The same frames decoded, headers included (`bytes` when nothing was compressed).
    pub raw_bytes: u64,
    /// Frame size, once a frame was seen.
    pub size: Option<(u32, u32)>,
}

/// One frame as read.
#[derive(Debug)]
pub struct Received<'a> {
    /// Size, format and row order.
    pub shape: FrameShape,
    /// The frame index, when the header carries one.
    pub frame_index: Option<u64>,
    /// The payload.
    pub pixels: &'a [u8],
}

/// Reads frames from `stream` until it ends or `args.frames` is reached, validating every header
/// and calling `each(count, frame)`. Each frame, header and payload, must arrive within `timeout`
/// of the moment it is waited for. Arbitrary bytes give an error, never a panic or an unbounded
/// allocation.
pub fn receive(
    stream: &mut dyn Source,
    args: &RecvArgs,
    timeout: Duration,
    mut each: impl FnMut(u64, &Received) -> Result<()>,
) -> Result<Totals> {
    // A glstream header may be a version 2 one, longer than the 56 bytes every version shares.
    let mut header_buf = vec![0u8; protocol::GLSTREAM_V2_MAX_LEN];
    let first_len = args.header.header_len();
    let mut payload = Vec::new();
    let mut decoder = FrameDecoder::default();
    let mut frames: u64 = 0;
    let mut bytes: u64 = 0;
    let mut raw_bytes: u64 = 0;
    let mut size = None;
    while args.frames.is_none_or(|limit| frames < limit) {
        let deadline = Instant::now() + timeout;
        let mut header_bytes = 0;
        let decoded = if args.header == HeaderMode::Raw {
            let (width_px, height_px) = (args.width.unwrap_or(0), args.height.unwrap_or(0));
            protocol::Decoded {
                width_px,
                height_px,
                format: args.format,
                payload_len: args.format.frame_bytes(width_px, height_px),
                top_down: None,
                frame_index: None,
                timestamp_ns: None,
                encoding: None,
                request_id: 0,
            }
        } else {
            let header = &mut header_buf[..first_len];
            match read_full(stream, header, deadline) {
                Ok(true) => {}
                Ok(false) => break,
                Err(short) => {
                    let so_far = format!("{} of {} header bytes", short.got, header.len());
                    return Err(short_frame(frames, timeout, short, &so_far));
                }
            }
            let mut header_len = first_len;
            if args.header == HeaderMode::Glstream {
                // A version 2 header says how long it is; the rest is read before decoding.
                header_len = protocol::glstream_header_len(&header_buf[..first_len])
                    .with_context(|| format!("frame {frames}: bad header"))?;
                if let Err(short) =
                    read_full(stream, &mut header_buf[first_len..header_len], deadline)
                {
                    let so_far = format!("{} of {header_len} header bytes", first_len + short.got);
                    return Err(short_frame(frames, timeout, short, &so_far));
                }
            }
            header_bytes = header_len;
            let decoded = protocol::decode(args.header, &header_buf[..header_len], args.format)
                .with_context(|| format!("frame {frames}: bad header"))?;
            if decoded.payload_len > MAX_FRAME_BYTES {
                bail!(
                    "frame {frames}: bad header: {} bytes ({}x{}) is over the 1 GiB limit",
                    decoded.payload_len,
                    decoded.width_px,
                    decoded.height_px
                );
            }
            for (what, expected, got) in [
                ("width", args.width, decoded.width_px),
                ("height", args.height, decoded.height_px),
            ] {
                if expected.is_some_and(|e| e != got) {
                    bail!(
                        "frame {frames}: {what} {got}, expected {}",
                        expected.unwrap_or(0)
                    );
                }
            }
            decoded
        };
        let (width_px, height_px) = (decoded.width_px, decoded.height_px);
        if size.is_some_and(|s| s != (width_px, height_px)) {
            bail!("frame {frames}: size changed to {width_px}x{height_px} mid-stream");
        }
        size = Some((width_px, height_px));
        payload.resize(decoded.payload_len as usize, 0);
        match read_full(stream, &mut payload, deadline) {
            Ok(true) => {}
            Ok(false) if args.header == HeaderMode::Raw => break,
            Ok(false) => bail!(
                "frame {frames}: stream ended mid-frame: got the header and 0 of {} payload bytes",
                payload.len()
            ),
            Err(short) => {
                let so_far = if args.header == HeaderMode::Raw {
                    format!("{} of {} bytes", short.got, payload.len())
                } else {
                    format!(
                        "the header and {} of {} payload bytes",
                        short.got,
                        payload.len()
                    )
                };
                return Err(short_frame(frames, timeout, short, &so_far));
            }
        }
        let pixels = decoder
            .decode(&decoded, &header_buf[..header_bytes], &payload)
            .with_context(|| format!("frame {frames}"))?;
        let frame = Received {
            shape: FrameShape {
                width_px,
                height_px,
                format: decoded.format,
                top_down: decoded.top_down.unwrap_or(args.top_down),
            },
            frame_index: decoded.frame_index,
            pixels,
        };
        each(frames, &frame)?;
        frames += 1;
        bytes += (header_bytes + payload.len()) as u64;
        raw_bytes += (header_bytes + frame.pixels.len()) as u64;
    }
    Ok(Totals {
        frames,
        bytes,
        raw_bytes,
        size,
    })
}

/// Subscribes to the shared-memory service `service` and hands each frame to `each` straight from
/// shared memory (no copy), validating every header, until the publisher has gone and every frame
/// it sent was received, or `args.frames` is reached. Each frame must arrive within `timeout`.
pub fn receive_shm(
    service: &str,
    args: &RecvArgs,
    timeout: Duration,
    mut each: impl FnMut(u64, &Received) -> Result<()>,
) -> Result<Totals> {
    // iceoryx2's signal handlers only record a signal: Ctrl-C must still end a consumer.
    shm::claim_signals();
    shm::keep_default_signals().context("cannot install signal handlers")?;
    let mut subscriber = ShmSubscriber::open(service, Instant::now() + timeout)?;
    let mut frames: u64 = 0;
    let mut bytes: u64 = 0;
    let mut size = None;
    while args.frames.is_none_or(|limit| frames < limit) {
        let Some(sample) = subscriber.next(Instant::now() + timeout)? else {
            if subscriber.ended() {
                break;
            }
            bail!(
                "frame {frames}: no frame within {} s",
                timeout.as_secs_f64()
            );
        };
        let header = *sample.user_header();
        let pixels = sample.payload();
        // The publisher is another process: its sizes are checked, without wrapping, against
        // the payload before anything uses them.
        let format = header
            .check(pixels.len())
            .map_err(|e| anyhow::anyhow!("frame {frames}: bad header: {e}"))?;
        let (width_px, height_px) = (header.width, header.height);
        check_size(args, frames, &mut size, width_px, height_px)?;
        let frame = Received {
            shape: FrameShape {
                width_px,
                height_px,
                format,
                top_down: header.top_down(),
            },
            frame_index: Some(header.frame_index),
            pixels,
        };
        each(frames, &frame)?;
        frames += 1;
        bytes += (shm::FRAME_HEADER_LEN + pixels.len()) as u64;
    }
    Ok(Totals {
        frames,
        bytes,
        raw_bytes: bytes,
        size,
    })
}

/// Checks the `pattern` scene's frame indices: in order, and how many are missing.
#[derive(Debug, Default)]
struct PatternCheck {
    first: Option<u64>,
    last: Option<u64>,
    drops: u64,
    /// Scratch for flipping top-down frames back to the bottom-up rows the decoder reads.
    scratch: Vec<u8>,
}

/// The frame index the `pattern` scene drew into `frame`, checked against its header's (a torn
/// or mislabelled frame fails). `scratch` holds flipped rows for top-down frames.
fn pattern_index(scratch: &mut Vec<u8>, count: u64, frame: &Received) -> Result<u64> {
    if frame.shape.format != Format::Rgba8 {
        bail!(
            "--verify-pattern reads rgba8 frames, not {}",
            frame.shape.format.name()
        );
    }
    let bottom_up = if frame.shape.top_down {
        scratch.clear();
        let stride = frame.shape.width_px as usize * 4;
        scratch.extend(frame.pixels.chunks_exact(stride).rev().flatten());
        &scratch[..]
    } else {
        frame.pixels
    };
    let Some(index) = decode_pattern(bottom_up, frame.shape.width_px, frame.shape.height_px) else {
        bail!("frame {count}: not a pattern frame (is the server running --scene pattern?)");
    };
    if let Some(header_index) = frame.frame_index
        && header_index % (1 << 32) != index
    {
        bail!("frame {count}: pattern says frame {index}, header says {header_index}");
    }
    Ok(index)
}

/// Checks frame `frames`'s size against --width and --height and against the frames before it
/// (a stream does not change size), and records it.
fn check_size(
    args: &RecvArgs,
    frames: u64,
    size: &mut Option<(u32, u32)>,
    width_px: u32,
    height_px: u32,
) -> Result<()> {
    for (what, expected, got) in [
        ("width", args.width, width_px),
        ("height", args.height, height_px),
    ] {
        if expected.is_some_and(|e| e != got) {
            bail!(
                "frame {frames}: {what} {got}, expected {}",
                expected.unwrap_or(0)
            );
        }
    }
    if size.is_some_and(|s| s != (width_px, height_px)) {
        bail!("frame {frames}: size changed to {width_px}x{height_px} mid-stream");
    }
    *size = Some((width_px, height_px));
    Ok(())
}

impl PatternCheck {
    /// Checks one frame and returns the index its pattern encodes.
    fn check(&mut self, count: u64, frame: &Received) -> Result<u64> {
        let index = pattern_index(&mut self.scratch, count, frame)?;
        if let Some(last) = self.last {
            if index <= last {
                bail!("frame {count}: frame {index} arrived after frame {last}: out of order");
            }
            self.drops += index - last - 1;
        }
        self.first.get_or_insert(index);
        self.last = Some(index);
        Ok(index)
    }
}

/// Tallies the `pattern` indices of a ZeroMQ collection, where frames from several producers
/// arrive in any order: which indices came, and which came more than once.
#[derive(Debug, Default)]
struct IndexTally {
    seen: BTreeSet<u64>,
    duplicates: Vec<u64>,
    scratch: Vec<u8>,
}

/// At most this many indices are listed in a report line.
const LISTED: usize = 20;

fn list(indices: impl Iterator<Item = u64>) -> String {
    let mut shown: Vec<String> = indices.take(LISTED + 1).map(|i| i.to_string()).collect();
    if shown.len() > LISTED {
        shown[LISTED] = "...".into();
    }
    shown.join(", ")
}

impl IndexTally {
    fn check(&mut self, count: u64, frame: &Received) -> Result<()> {
        let index = pattern_index(&mut self.scratch, count, frame)?;
        if !self.seen.insert(index) {
            self.duplicates.push(index);
        }
        Ok(())
    }

    /// Indices missing between the lowest and the highest received.
    fn missing(&self) -> impl Iterator<Item = u64> + '_ {
        let range = match (self.seen.first(), self.seen.last()) {
            (Some(&first), Some(&last)) => first..last + 1,
            _ => 0..0,
        };
        range.filter(|i| !self.seen.contains(i))
    }

    /// Prints the tally; fails on a duplicate or on more than `max_drops` missing.
    fn report(&self, max_drops: u64) -> Result<()> {
        let missing = self.missing().count() as u64;
        if let (Some(first), Some(last)) = (self.seen.first(), self.seen.last()) {
            println!(
                "pattern: {} distinct frames, indices {first}..={last}, {missing} missing, {} \
                 duplicates",
                self.seen.len(),
                self.duplicates.len()
            );
        }
        if missing > 0 {
            println!("missing: {}", list(self.missing()));
        }
        if !self.duplicates.is_empty() {
            bail!(
                "frames received more than once: {}",
                list(self.duplicates.iter().copied())
            );
        }
        if missing > max_drops {
            bail!("{missing} frames missing (--max-drops {max_drops})");
        }
        Ok(())
    }
}

/// At most this many dropped messages are logged one by one; the rest are only counted.
const LOGGED_DROPS: u64 = 10;

/// The messages a ZeroMQ collector dropped. Any peer can send anything: a message that breaks the
/// contract, or a frame of another size than the collection's, costs only itself.
#[derive(Debug, Default)]
struct Dropped {
    messages: u64,
}

impl Dropped {
    fn note(&mut self, why: &dyn std::fmt::Display) {
        self.messages += 1;
        if self.messages <= LOGGED_DROPS {
            log::warn!("dropped message {} from a peer: {why}", self.messages);
        }
        if self.messages == LOGGED_DROPS {
            log::warn!("further dropped messages are counted, not logged");
        }
    }
}

/// Collects frames from a ZeroMQ socket until `--frames` messages or a signal.
fn run_zmq(args: &RecvArgs) -> Result<()> {
    let mut receiver = zmq_receiver::receiver(
        args.zmq_pattern,
        &args.zmq_bind,
        &args.zmq_connect,
        args.zmq_hwm()?,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    {
        // Scripts and tests read the endpoints (a `*` port resolved) from these lines.
        let mut stdout = io::stdout().lock();
        for endpoint in receiver.bound() {
            writeln!(stdout, "listening on {endpoint}")?;
        }
        for endpoint in &args.zmq_connect {
            writeln!(stdout, "connecting to {endpoint}")?;
        }
        stdout.flush()?;
    }
    let mut tally = args.verify_pattern.then(IndexTally::default);
    let (mut frames, mut bytes, mut raw_bytes) = (0u64, 0u64, 0u64);
    let mut decoder = FrameDecoder::default();
    let mut size = None;
    let mut first: Option<Instant> = None;
    let mut dropped = Dropped::default();
    while args.frames.is_none_or(|limit| frames < limit) && !stop.load(Ordering::SeqCst) {
        let parts = match receiver.recv(Duration::from_millis(100)) {
            Ok(Some(parts)) => parts,
            Ok(None) => continue,
            Err(e) if e.is_from_peer() => {
                dropped.note(&format_args!("{:#}", anyhow::Error::new(e)));
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("frame {frames}")),
        };
        let header = parts.header;
        let (width_px, height_px) = (header.width_px, header.height_px);
        if let Err(e) = check_size(args, frames, &mut size, width_px, height_px) {
            dropped.note(&format_args!("{e:#}"));
            continue;
        }
        let pixels = match decoder.decode(&header, parts.header_bytes, parts.payload) {
            Ok(pixels) => pixels,
            Err(e) => {
                dropped.note(&format_args!("{e:#}"));
                continue;
            }
        };
        first.get_or_insert_with(Instant::now);
        // A glstream header always carries the index.
        let index = header.frame_index.unwrap_or(frames);
        let frame = Received {
            shape: FrameShape {
                width_px,
                height_px,
                format: header.format,
                top_down: header.top_down.unwrap_or(false),
            },
            frame_index: Some(index),
            pixels,
        };
        if let Some(tally) = &mut tally {
            tally.check(frames, &frame)?;
        }
        if let Some(dir) = &args.save
            && index.is_multiple_of(args.every)
        {
            capture::save_frame_png(
                &dir.join(format!("frame_{index:06}.png")),
                &frame.shape,
                frame.pixels,
            )?;
        }
        frames += 1;
        bytes += parts.bytes;
        raw_bytes += (parts.header_bytes.len() + frame.pixels.len()) as u64;
    }
    let seconds = first.map_or(0.0, |t| t.elapsed().as_secs_f64()).max(1e-9);
    let (w, h) = size.unwrap_or((0, 0));
    println!(
        "received {frames} frames {w}x{h} in {seconds:.2} s since the first: {:.1} fps, {:.1} MB/s{}",
        frames as f64 / seconds,
        bytes as f64 / seconds / 1e6,
        decoded_rate(bytes, raw_bytes, seconds)
    );
    if dropped.messages > 0 {
        println!(
            "dropped {} messages that were not frames of this collection",
            dropped.messages
        );
    }
    if let Some(tally) = &tally {
        tally.report(args.max_drops)?;
    }
    if let Some(limit) = args.frames
        && frames < limit
    {
        bail!("stopped after {frames} of {limit} frames");
    }
    Ok(())
}

/// What the summary adds for a compressed stream: the rate decoded and the ratio.
fn decoded_rate(bytes: u64, raw_bytes: u64, seconds: f64) -> String {
    if raw_bytes == bytes || bytes == 0 {
        return String::new();
    }
    format!(
        " ({:.1} MB/s decoded, {:.1}x)",
        raw_bytes as f64 / seconds / 1e6,
        raw_bytes as f64 / bytes as f64
    )
}

/// Runs the consumer until the stream ends or `--frames` is reached.
pub fn run(args: &RecvArgs) -> Result<()> {
    if args.every == 0 {
        bail!("--every 0: must be at least 1");
    }
    if !args.zmq_bind.is_empty() || !args.zmq_connect.is_empty() {
        if let Some(dir) = &args.save {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        return run_zmq(args);
    }
    let timeout = seconds("--timeout", args.timeout, "a time")?;
    if args.header == HeaderMode::Raw {
        let (Some(width_px), Some(height_px)) = (args.width, args.height) else {
            bail!("--header raw carries no size: give --width and --height");
        };
        let bytes = args.format.frame_bytes(width_px, height_px);
        if bytes == 0 || bytes > MAX_FRAME_BYTES {
            bail!("--width {width_px} --height {height_px}: a frame must be 1 byte to 1 GiB");
        }
    }
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let started = Instant::now();
    let mut pattern = args.verify_pattern.then(PatternCheck::default);
    let each = |count, frame: &Received| {
        let pattern_index = match &mut pattern {
            Some(check) => Some(check.check(count, frame)?),
            None => None,
        };
        // Named by frame index where the stream tells it, as `snapshot --frames` names them.
        let index = frame.frame_index.or(pattern_index).unwrap_or(count);
        match &args.save {
            Some(dir) if count.is_multiple_of(args.every) => capture::save_frame_png(
                &dir.join(format!("frame_{index:06}.png")),
                &frame.shape,
                frame.pixels,
            ),
            _ => Ok(()),
        }
    };
    let totals = match &args.shm {
        Some(service) => receive_shm(service, args, timeout, each)?,
        None => {
            let mut stream: Box<dyn Source> = match (&args.connect, &args.unix) {
                (_, Some(path)) => Box::new(
                    UnixStream::connect(path)
                        .with_context(|| format!("cannot connect to {}", path.display()))?,
                ),
                (Some(addr), None) => Box::new(
                    TcpStream::connect(addr)
                        .with_context(|| format!("cannot connect to {addr}"))?,
                ),
                (None, None) => bail!("give --connect HOST:PORT, --unix PATH or --shm SERVICE"),
            };
            receive(&mut *stream, args, timeout, each)?
        }
    };
    let Totals {
        frames,
        bytes,
        raw_bytes,
        size,
    } = totals;
    let seconds = started.elapsed().as_secs_f64();
    let (w, h) = size.unwrap_or((0, 0));
    println!(
        "received {frames} frames {w}x{h} in {seconds:.2} s: {:.1} fps, {:.1} MB/s{}",
        frames as f64 / seconds,
        bytes as f64 / seconds / 1e6,
        decoded_rate(bytes, raw_bytes, seconds)
    );
    if let Some(check) = &pattern {
        if let (Some(first), Some(last)) = (check.first, check.last) {
            println!(
                "pattern: frames {first}..={last} in order, {} dropped",
                check.drops
            );
        }
        if check.drops > args.max_drops {
            bail!(
                "{} frames dropped (--max-drops {})",
                check.drops,
                args.max_drops
            );
        }
    }
    if let Some(limit) = args.frames
        && frames < limit
    {
        bail!("stream ended after {frames} of {limit} frames");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn args(header: HeaderMode) -> RecvArgs {
        RecvArgs {
            connect: None,
            unix: None,
            zmq_bind: Vec::new(),
            zmq_connect: Vec::new(),
            zmq_pattern: crate::stream::zmq::RecvPattern::Pull,
            zmq_hwm: 2,
            shm: None,
            header,
            format: Format::Rgba8,
            top_down: false,
            width: None,
            height: None,
            frames: None,
            save: None,
            every: 1,
            verify_pattern: false,
            max_drops: 0,
            timeout: 10.0,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn frame(width: u16, height: u16, fill: u8) -> Vec<u8> {
        let len = width as u64 * height as u64 * 4;
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(&height.to_le_bytes());
        bytes.extend_from_slice(&width.to_le_bytes());
        bytes.resize(12 + len as usize, fill);
        bytes
    }

    #[test]
    fn a_tally_reports_missing_and_duplicate_indices() {
        let mut tally = IndexTally::default();
        for index in [4, 0, 2, 1, 2] {
            if !tally.seen.insert(index) {
                tally.duplicates.push(index);
            }
        }
        assert_eq!(tally.missing().collect::<Vec<_>>(), [3]);
        assert_eq!(tally.duplicates, [2]);
        assert!(
            tally
                .report(5)
                .unwrap_err()
                .to_string()
                .contains("more than once: 2")
        );
        tally.duplicates.clear();
        assert!(
            tally
                .report(0)
                .unwrap_err()
                .to_string()
                .contains("1 frames missing")
        );
        assert!(tally.report(1).is_ok());
        assert_eq!(list(0..30), format!("{}, ...", list(0..20)));
    }

    #[test]
    fn a_zmq_hwm_outside_1_to_1024_is_refused_before_anything_is_bound() {
        // 0 would be no limit at all to libzmq; over i32::MAX it would wrap.
        for hwm in [0, 1025, 1 << 31, u32::MAX] {
            let mut args = args(HeaderMode::Glstream);
            args.zmq_bind = vec!["tcp://127.0.0.1:*".into()];
            args.zmq_hwm = hwm;
            let error = run(&args).unwrap_err();
            assert_eq!(
                format!("{error:#}"),
                format!("--zmq-hwm {hwm}: must be between 1 and 1024 frames")
            );
        }
    }

    #[test]
    fn reads_whole_frames_and_reports_them() {
        let stream = [frame(3, 2, 7), frame(3, 2, 9)].concat();
        let mut seen = Vec::new();
        let totals = receive(
            &mut &stream[..],
            &args(HeaderMode::Blender),
            TIMEOUT,
            |i, f| {
                seen.push((i, f.shape.width_px, f.shape.height_px, f.pixels[0]));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, [(0, 3, 2, 7), (1, 3, 2, 9)]);
        assert_eq!(totals.bytes, stream.len() as u64);
    }

    #[test]
    fn an_empty_frame_header_is_an_error() {
        let error = receive(
            &mut &frame(0, 5, 0)[..],
            &args(HeaderMode::Blender),
            TIMEOUT,
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("empty frame"), "{error:#}");
    }

    #[test]
    fn a_huge_claimed_frame_is_refused_without_allocating() {
        let stream = frame(0, 0, 0);
        let mut huge = stream.clone();
        huge[0..8].copy_from_slice(&(65535u64 * 65535 * 4).to_le_bytes());
        huge[8..12].copy_from_slice(&[0xff; 4]);
        let error = receive(
            &mut &huge[..],
            &args(HeaderMode::Blender),
            TIMEOUT,
            |_, _| Ok(()),
        );
        assert!(error.unwrap_err().to_string().contains("1 GiB"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            mode in prop_oneof![Just(HeaderMode::Blender), Just(HeaderMode::Blender32)],
        ) {
            let _ = receive(&mut &bytes[..], &args(mode), TIMEOUT, |_, _| Ok(()));
        }

        #[test]
        fn truncated_streams_are_errors(width in 1u16..8, height in 1u16..8, cut in 1usize..60) {
            let stream = [frame(width, height, 1), frame(width, height, 2)].concat();
            let cut = cut.min(stream.len() - 1);
            // Cutting exactly one whole frame off leaves a valid one-frame stream.
            prop_assume!((stream.len() - cut) % (stream.len() / 2) != 0);
            let truncated = &stream[..stream.len() - cut];
            let result = receive(&mut &truncated[..], &args(HeaderMode::Blender), TIMEOUT, |_, _| Ok(()));
            prop_assert!(result.is_err());
        }

        #[test]
        fn valid_headers_with_garbage_after_are_errors_not_panics(
            garbage in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let stream = [frame(2, 2, 5), garbage].concat();
            let _ = receive(&mut &stream[..], &args(HeaderMode::Blender), TIMEOUT, |_, _| Ok(()));
        }
    }
}
