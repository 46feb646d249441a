//! `glstream recv`: the reference consumer. It reads a stream the way a Blender consumer does,
//! validates every header, and reports frames, fps and MB/s; it can save PNGs along the way.
//!
//! The payload buffer is allocated once and reused for every frame of the same size.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::capture;
use crate::stream::protocol::{self, HeaderMode};

/// Options of `glstream recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// TCP server to read from, e.g. 127.0.0.1:9000.
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "unix")]
    pub connect: Option<String>,

    /// Unix domain socket to read from.
    #[arg(long, value_name = "PATH", conflicts_with = "connect")]
    pub unix: Option<PathBuf>,

    /// Header the server sends.
    #[arg(long, value_enum, default_value_t = HeaderMode::Blender)]
    pub header: HeaderMode,

    /// Frame width; needed with --header raw, checked against the headers otherwise.
    #[arg(long)]
    pub width: Option<u32>,

    /// Frame height; needed with --header raw, checked against the headers otherwise.
    #[arg(long)]
    pub height: Option<u32>,

    /// Stop after this many frames (default: until the server closes the stream).
    #[arg(long)]
    pub frames: Option<u64>,

    /// Save frames as PNG (rows top-down) into this directory.
    #[arg(long)]
    pub save: Option<PathBuf>,

    /// With --save, keep every K-th frame (frame 0, K, 2K, ...).
    #[arg(long, default_value_t = 1)]
    pub every: u64,
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` if the stream ended before the first byte.
fn read_full(stream: &mut dyn Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What a stream delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Whole frames read.
    pub frames: u64,
    /// Bytes read, headers included.
    pub bytes: u64,
    /// Frame size, once a frame was seen.
    pub size: Option<(u32, u32)>,
}

/// A header claiming more than this is refused before anything is allocated: it is larger than
/// any render target a driver allows (16384² RGBA8), so it can only be garbage.
const MAX_FRAME_BYTES: u64 = 1 << 30;

/// Reads frames from `stream` until it ends or `args.frames` is reached, validating every header
/// and calling `each(index, width, height, pixels)`. Arbitrary bytes give an error, never a panic
/// or an unbounded allocation.
pub fn receive(
    stream: &mut dyn Read,
    args: &RecvArgs,
    mut each: impl FnMut(u64, u32, u32, &[u8]) -> Result<()>,
) -> Result<Totals> {
    let mut header = [0u8; protocol::MAX_HEADER_LEN];
    let header = &mut header[..args.header.len()];
    let mut payload = Vec::new();
    let mut frames: u64 = 0;
    let mut bytes: u64 = 0;
    let mut size = None;
    while args.frames.is_none_or(|limit| frames < limit) {
        let (width_px, height_px) = if args.header == HeaderMode::Raw {
            (args.width.unwrap_or(0), args.height.unwrap_or(0))
        } else {
            match read_full(stream, header) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => bail!("frame {frames}: stream ended inside a header: {e}"),
            }
            let info = protocol::decode(args.header, header)
                .with_context(|| format!("frame {frames}: bad header"))?;
            if info.payload_len > MAX_FRAME_BYTES {
                bail!(
                    "frame {frames}: bad header: {} bytes ({}x{}) is over the 1 GiB limit",
                    info.payload_len,
                    info.width_px,
                    info.height_px
                );
            }
            for (what, expected, got) in [
                ("width", args.width, info.width_px),
                ("height", args.height, info.height_px),
            ] {
                if expected.is_some_and(|e| e != got) {
                    bail!(
                        "frame {frames}: {what} {got}, expected {}",
                        expected.unwrap_or(0)
                    );
                }
            }
            (info.width_px, info.height_px)
        };
        if size.is_some_and(|s| s != (width_px, height_px)) {
            bail!("frame {frames}: size changed to {width_px}x{height_px} mid-stream");
        }
        size = Some((width_px, height_px));
        payload.resize(width_px as usize * height_px as usize * 4, 0);
        match read_full(stream, &mut payload) {
            Ok(true) => {}
            Ok(false) if args.header == HeaderMode::Raw => break,
            Ok(false) | Err(_) => bail!("frame {frames}: stream ended mid-frame"),
        }
        each(frames, width_px, height_px, &payload)?;
        frames += 1;
        bytes += (header.len() + payload.len()) as u64;
    }
    Ok(Totals {
        frames,
        bytes,
        size,
    })
}

/// Runs the consumer until the stream ends or `--frames` is reached.
pub fn run(args: &RecvArgs) -> Result<()> {
    if args.every == 0 {
        bail!("--every 0: must be at least 1");
    }
    if args.header == HeaderMode::Raw && (args.width.is_none() || args.height.is_none()) {
        bail!("--header raw carries no size: give --width and --height");
    }
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut stream: Box<dyn Read> = match (&args.connect, &args.unix) {
        (_, Some(path)) => Box::new(
            UnixStream::connect(path)
                .with_context(|| format!("cannot connect to {}", path.display()))?,
        ),
        (Some(addr), None) => {
            Box::new(TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?)
        }
        (None, None) => bail!("give --connect HOST:PORT or --unix PATH"),
    };
    let started = Instant::now();
    let totals = receive(
        &mut stream,
        args,
        |index, width_px, height_px, pixels| match &args.save {
            Some(dir) if index.is_multiple_of(args.every) => capture::save_png(
                &dir.join(format!("frame_{index:06}.png")),
                width_px,
                height_px,
                pixels,
            ),
            _ => Ok(()),
        },
    )?;
    let Totals {
        frames,
        bytes,
        size,
    } = totals;
    let seconds = started.elapsed().as_secs_f64();
    let (w, h) = size.unwrap_or((0, 0));
    println!(
        "received {frames} frames {w}x{h} in {seconds:.2} s: {:.1} fps, {:.1} MB/s",
        frames as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
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
            header,
            width: None,
            height: None,
            frames: None,
            save: None,
            every: 1,
        }
    }

    fn frame(width: u16, height: u16, fill: u8) -> Vec<u8> {
        let len = width as u64 * height as u64 * 4;
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(&height.to_le_bytes());
        bytes.extend_from_slice(&width.to_le_bytes());
        bytes.resize(12 + len as usize, fill);
        bytes
    }

    #[test]
    fn reads_whole_frames_and_reports_them() {
        let stream = [frame(3, 2, 7), frame(3, 2, 9)].concat();
        let mut seen = Vec::new();
        let totals = receive(
            &mut &stream[..],
            &args(HeaderMode::Blender),
            |i, w, h, px| {
                seen.push((i, w, h, px[0]));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, [(0, 3, 2, 7), (1, 3, 2, 9)]);
        assert_eq!(totals.bytes, stream.len() as u64);
    }

    #[test]
    fn a_huge_claimed_frame_is_refused_without_allocating() {
        let stream = frame(0, 0, 0);
        let mut huge = stream.clone();
        huge[0..8].copy_from_slice(&(65535u64 * 65535 * 4).to_le_bytes());
        huge[8..12].copy_from_slice(&[0xff; 4]);
        let error = receive(&mut &huge[..], &args(HeaderMode::Blender), |_, _, _, _| {
            Ok(())
        });
        assert!(error.unwrap_err().to_string().contains("1 GiB"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            mode in prop_oneof![Just(HeaderMode::Blender), Just(HeaderMode::Blender32)],
        ) {
            let _ = receive(&mut &bytes[..], &args(mode), |_, _, _, _| Ok(()));
        }

        #[test]
        fn truncated_streams_are_errors(width in 1u16..8, height in 1u16..8, cut in 1usize..60) {
            let stream = [frame(width, height, 1), frame(width, height, 2)].concat();
            let cut = cut.min(stream.len() - 1);
            // Cutting exactly one whole frame off leaves a valid one-frame stream.
            prop_assume!((stream.len() - cut) % (stream.len() / 2) != 0);
            let truncated = &stream[..stream.len() - cut];
            let result = receive(&mut &truncated[..], &args(HeaderMode::Blender), |_, _, _, _| Ok(()));
            prop_assert!(result.is_err());
        }

        #[test]
        fn valid_headers_with_garbage_after_are_errors_not_panics(
            garbage in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let stream = [frame(2, 2, 5), garbage].concat();
            let _ = receive(&mut &stream[..], &args(HeaderMode::Blender), |_, _, _, _| Ok(()));
        }
    }
}
