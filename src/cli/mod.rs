//! Command-line parsing (clap derive) and validation into a typed configuration.
//!
//! Nothing here touches GL or sockets: every check that can be made from the arguments alone is
//! made here, before any context is created, so bad input fails fast with one line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::builder::PossibleValue;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

mod bench;
mod compare;
mod outputs;
mod recv;
mod serve;
pub mod size;
mod snapshot;

pub use bench::{BenchArgs, BenchTransport};
pub use compare::CompareArgs;
pub use recv::RecvArgs;
pub use serve::{ServeArgs, ServeConfig, Shard};
pub use snapshot::SnapshotArgs;

use crate::format::Format;
use crate::render::RenderOptions;
use crate::scene::{SceneOptions, SceneSource};
use crate::stream::hub::Policy;
use crate::stream::protocol::HeaderMode;
use crate::stream::zmq::{Pattern, RecvPattern};

/// Headless OpenGL render-to-texture streamer: renders frames on an EGL device, reads them back
/// through a ring of pixel-pack buffers and streams them over TCP in the byte format of a Blender
/// game-engine producer.
#[derive(Debug, Parser)]
#[command(name = "glstream", version, max_term_width = 100)]
pub struct Cli {
    /// What to do instead of serving the stream.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Serve options (the default action).
    #[command(flatten)]
    pub serve: ServeArgs,

    /// More log output (-v debug, -vv trace). RUST_LOG, when set, takes precedence.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

impl Cli {
    /// Parses a command line (program name first), as `Parser::try_parse_from` does, and also
    /// refuses a serve option given before a subcommand: `glstream --width 640 snapshot` would
    /// otherwise parse and render at the default size, since the options before the subcommand
    /// belong to the default action. Global options (`-v`, `-q`) may go anywhere.
    pub fn try_parse_checked_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Cli::command();
        let mut matches = command.try_get_matches_from_mut(args)?;
        if let Some((name, _)) = matches.subcommand() {
            let given = command.get_arguments().find(|arg| {
                !arg.is_global_set()
                    && !matches!(
                        arg.get_action(),
                        ArgAction::Help
                            | ArgAction::HelpShort
                            | ArgAction::HelpLong
                            | ArgAction::Version
                    )
                    && matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
            });
            if let Some(arg) = given {
                let flag = arg
                    .get_long()
                    .map_or_else(|| arg.get_id().to_string(), |long| format!("--{long}"));
                let id = arg.get_id().clone();
                let name = name.to_owned();
                let subcommand = command
                    .find_subcommand_mut(&name)
                    .expect("clap matched this subcommand, so the command has it");
                let message = if subcommand.get_arguments().any(|a| *a.get_id() == id) {
                    format!(
                        "{flag} before `{name}` is a serve option and would be ignored; \
                         give it after `{name}`"
                    )
                } else {
                    format!("{flag} is a serve option; `{name}` does not take it")
                };
                return Err(subcommand.error(ErrorKind::ArgumentConflict, message));
            }
        }
        Cli::from_arg_matches_mut(&mut matches)
    }
}

/// A command-line error as glstream prints it: clap's whole message (what is wrong, the missing
/// arguments, tips, usage) with `glstream: ` before its first line, and instead of clap's
/// generic "try '--help'" a hint that names the help of the (sub)command that was used. `args` is
/// the command line that failed (program name first).
pub fn usage_error(error: &clap::Error, args: &[OsString]) -> String {
    let rendered = error.to_string();
    // The usage line names the command path: "Usage: glstream compare [OPTIONS] <EXPECTED> ...".
    // Some errors (an invalid value) come without one; then the first word of the command line
    // that names a subcommand says which.
    let from_usage = rendered
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("Usage: "))
        .map(|usage| {
            usage
                .split_whitespace()
                .take_while(|word| !word.starts_with(['[', '<', '-']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|path| path.contains(' '));
    let command = from_usage.unwrap_or_else(|| {
        let cli = Cli::command();
        args.iter()
            .skip(1)
            .filter_map(|arg| arg.to_str())
            .find(|arg| cli.find_subcommand(arg).is_some())
            .map_or_else(|| "glstream".to_owned(), |name| format!("glstream {name}"))
    });
    let mut lines: Vec<&str> = rendered
        .lines()
        .filter(|line| !line.starts_with("For more information, try "))
        .collect();
    while lines.last().is_some_and(|line| line.trim().is_empty()) {
        lines.pop();
    }
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            text.push_str("glstream: ");
            text.push_str(line.trim_start_matches("error: "));
        } else {
            text.push_str(line);
        }
        text.push('\n');
    }
    text.push_str(&format!("glstream: see `{command} --help`\n"));
    text
}

/// Subcommands beside the default serve action.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the EGL devices (index for --device, software or hardware, extensions).
    Devices,
    /// Read a stream as a consumer would: validate headers, report fps and MB/s, save PNGs.
    Recv(RecvArgs),
    /// Render frames through the streaming pipeline and write them as PNGs (rows top-down).
    Snapshot(SnapshotArgs),
    /// Compare two PNGs with a per-pixel tolerance and an outlier bound (exit 0/1, 2 on error).
    Compare(CompareArgs),
    /// Measure render, readback and end-to-end fps per stage, for 1/2/3 PBOs, over TCP and Unix
    /// sockets by default (--transports).
    Bench(BenchArgs),
}

/// Options of every job that renders: size, device, ring, scene.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Frame width in pixels.
    #[arg(long, default_value_t = 800)]
    pub width: u32,

    /// Frame height in pixels.
    #[arg(long, default_value_t = 600)]
    pub height: u32,

    /// EGL device index (see `glstream devices`). Default: first hardware device, else software.
    #[arg(long)]
    pub device: Option<usize>,

    /// Pixel-pack buffers in the readback ring; 1 is the synchronous baseline.
    #[arg(long, default_value_t = 2)]
    pub pbo_count: usize,

    /// Pixel format of the frames: rgba8, bgra8, rgb8, gray8 (luma), depth32f (window-space
    /// depth as little-endian f32, background 1.0).
    #[arg(long, value_enum, default_value_t = Format::Rgba8)]
    pub format: Format,

    /// Rows top-down (flipped on the GPU) instead of OpenGL's bottom-up.
    #[arg(long)]
    pub flip: bool,

    /// Scene to render: a built-in (cube, pattern), a Shadertoy-style shader (.frag, .glsl) or a
    /// glTF 2.0 model (.gltf, .glb).
    #[arg(long, default_value = "cube")]
    pub scene: SceneSource,

    /// Use this image file as the cube's texture instead of the built-in one (the cube scene only;
    /// refused with any other).
    #[arg(long)]
    pub texture: Option<PathBuf>,
}

impl RenderArgs {
    /// Checks sizes and ring length.
    pub fn validate(&self) -> Result<RenderOptions> {
        for (flag, value) in [("--width", self.width), ("--height", self.height)] {
            if value == 0 {
                bail!("{flag} 0: the frame must be at least 1 pixel");
            }
        }
        if let Some(texture) = &self.texture
            && self.scene != SceneSource::Cube
        {
            bail!(
                "--texture {}: only the cube scene has a texture to replace; drop --texture or use \
                 --scene cube",
                texture.display()
            );
        }
        if !(1..=MAX_PBO_COUNT).contains(&self.pbo_count) {
            bail!(
                "--pbo-count {}: must be between 1 and {MAX_PBO_COUNT}",
                self.pbo_count
            );
        }
        Ok(RenderOptions {
            device: self.device,
            width_px: self.width,
            height_px: self.height,
            pbo_count: self.pbo_count,
            format: self.format,
            flip: self.flip,
            scene: SceneOptions {
                source: self.scene.clone(),
                texture: self.texture.clone(),
                frame_rate: None,
            },
        })
    }
}

// The stream types stay free of clap: their command-line names and help live here.
impl ValueEnum for HeaderMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            HeaderMode::Blender,
            HeaderMode::Blender32,
            HeaderMode::Raw,
            HeaderMode::Glstream,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            HeaderMode::Blender => PossibleValue::new("blender")
                .help("12 bytes: u64 LE payload length, u16 LE height, u16 LE width (Python \"L\" on 64-bit Linux)"),
            HeaderMode::Blender32 => PossibleValue::new("blender32")
                .help("8 bytes: u32 LE payload length, u16 LE height, u16 LE width (Python \"L\" on Windows)"),
            HeaderMode::Raw => PossibleValue::new("raw")
                .help("No header: the bare pixels, for ffmpeg -f rawvideo or GStreamer rawvideoparse"),
            HeaderMode::Glstream => PossibleValue::new("glstream").help(
                "56 bytes: magic, version, size, format, flags, stride, frame index, timestamp, length",
            ),
        })
    }
}

impl ValueEnum for Policy {
    fn value_variants<'a>() -> &'a [Self] {
        &[Policy::Latest, Policy::Lossless]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Policy::Latest => PossibleValue::new("latest").help(
                "Skip to the newest frame; never a torn frame, never more than one frame held per client",
            ),
            Policy::Lossless => PossibleValue::new("lossless").help(
                "Every frame in order; the render loop waits for the slowest client (recordings)",
            ),
        })
    }
}

impl ValueEnum for Pattern {
    fn value_variants<'a>() -> &'a [Self] {
        &[Pattern::Push, Pattern::Pub]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Pattern::Push => PossibleValue::new("push").help(
                "Each frame to one connected puller (fair queueing); the renderer waits when all are full",
            ),
            Pattern::Pub => PossibleValue::new("pub").help(
                "Every subscriber gets every frame it keeps up with; nothing is rendered without one",
            ),
        })
    }
}

impl ValueEnum for RecvPattern {
    fn value_variants<'a>() -> &'a [Self] {
        &[RecvPattern::Pull, RecvPattern::Sub]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            RecvPattern::Pull => {
                PossibleValue::new("pull").help("Collect from push producers (a render farm)")
            }
            RecvPattern::Sub => PossibleValue::new("sub").help("Subscribe to a pub producer"),
        })
    }
}

/// Largest PBO ring we accept; more buffers than this only cost memory.
pub const MAX_PBO_COUNT: usize = 16;

/// Most clients one server takes; each may pin one frame-sized buffer.
pub const MAX_CLIENTS: usize = 1024;

/// Seconds as a Duration between 1 ms and a day, or an error naming the flag: what a pacing
/// interval or a timeout can sensibly be (and what `Duration` and `Instant` arithmetic can hold).
pub fn seconds(flag: &str, value: f64, what: &str) -> Result<Duration> {
    if !(0.001..=86_400.0).contains(&value) {
        bail!("{flag}: {what} of {value} s is out of range (1 ms to 1 day)");
    }
    Ok(Duration::from_secs_f64(value))
}

/// A finite number above zero, or an error naming the flag.
pub fn positive(flag: &str, value: f64) -> Result<f64> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{flag} {value}: must be a positive number");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_checked_from(std::iter::once("glstream").chain(args.iter().copied()))
    }

    fn usage(args: &[&str]) -> String {
        let argv: Vec<OsString> = std::iter::once("glstream")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        usage_error(&parse(args).unwrap_err(), &argv)
    }

    #[test]
    fn serve_options_before_a_subcommand_are_refused_by_name() {
        let error = parse(&["--width", "640", "snapshot", "-o", "x.png"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--width before `snapshot`"), "{error}");
        let error = parse(&["--port", "1", "devices"]).unwrap_err().to_string();
        assert!(error.contains("--port is a serve option"), "{error}");
        // Defaults are not "given"; global options go anywhere; after the subcommand is right.
        assert!(parse(&["-v", "snapshot", "--width", "640", "-o", "x.png"]).is_ok());
        assert!(parse(&["devices", "-q"]).is_ok());
        assert!(parse(&["--width", "640"]).is_ok());
    }

    #[test]
    fn missing_arguments_are_listed_with_the_subcommand_help() {
        let text = usage(&["compare"]);
        assert!(
            text.starts_with("glstream: the following required arguments"),
            "{text}"
        );
        assert!(
            text.contains("<EXPECTED>") && text.contains("<ACTUAL>"),
            "{text}"
        );
        assert!(
            text.ends_with("glstream: see `glstream compare --help`\n"),
            "{text}"
        );
        assert!(!text.contains("For more information"), "{text}");
        // An invalid value comes without a usage line; the command line names the subcommand.
        let text = usage(&["recv", "--width", "x"]);
        assert!(text.ends_with("see `glstream recv --help`\n"), "{text}");
        assert!(usage(&["--no-such-flag"]).ends_with("see `glstream --help`\n"));
    }

    #[test]
    fn a_texture_is_refused_for_scenes_without_one() {
        let cli = parse(&["--scene", "pattern", "--texture", "t.png"]).unwrap();
        let error = cli.serve.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("--texture t.png: only the cube"),
            "{error}"
        );
        assert!(
            parse(&["--texture", "t.png"])
                .unwrap()
                .serve
                .validate()
                .is_ok()
        );
    }
}
