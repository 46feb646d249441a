//! Options of the default action, serving the stream, and their validation.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use super::outputs::{OutputArgs, OutputEntry, StreamSettings};
use super::{MAX_CLIENTS, RenderArgs, positive, seconds};
use crate::codec::Compress;
use crate::render::RenderOptions;
use crate::stream::hub::Policy;
use crate::stream::protocol::check_frame_bytes;

/// Options of the default action: render and stream.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Size, device, ring and scene.
    #[command(flatten)]
    pub render: RenderArgs,

    /// Address to listen on. The default is loopback only; use 0.0.0.0 to accept remote clients.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// Each output's flags.
    #[command(flatten)]
    pub outputs: OutputArgs,

    /// Refuse connections beyond this many clients.
    #[arg(long, default_value_t = 32)]
    pub max_clients: usize,

    /// What a client that cannot keep up gets: skipped frames (latest), or a render loop that
    /// waits for it (lossless). Default: latest for sockets, lossless for --stdout, which is a
    /// recording.
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,

    /// Stop after rendering this many frames (the last ones are still sent).
    #[arg(long)]
    pub frames: Option<u64>,

    /// Render at most this many frames per second (default: as fast as possible).
    #[arg(long)]
    pub fps: Option<f64>,

    /// Drop a client that has not taken a whole frame within this many seconds. (A ZeroMQ push
    /// socket is never dropped: peers at their high-water mark make the renderer wait.)
    #[arg(long, default_value_t = 10.0)]
    pub send_timeout: f64,

    /// Render only the frame indices i with i mod N == K (a render farm of N producers; with
    /// --frames M, this producer renders the indices below M of its shard). Needs an output
    /// whose frames carry their index: ZeroMQ, --shm, or --header glstream.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,

    /// Take control requests (JSON, see docs/control.md) on a ZeroMQ ROUTER/REP socket at
    /// ENDPOINT: tcp://HOST:PORT, tcp://HOST:* (any free port), ipc://PATH, or a bare PORT on
    /// --bind. Each request may set shader uniforms, the camera, glTF nodes and the frame
    /// index; the frame answering it carries its id (glstream headers become version 2).
    #[arg(long, value_name = "ENDPOINT")]
    pub control: Option<String>,

    /// With --control: render only when a request asks, exactly one frame per request, on
    /// every output.
    #[arg(long)]
    pub on_request: bool,

    /// Compress every frame sent over TCP, Unix, --connect and --stdout (which then need
    /// --header glstream: it names the codec) and ZeroMQ: qoi, zstd[:LEVEL] (1-19, default 1),
    /// lz4 (lossless) or jpeg[:QUALITY] (1-100, default 80; lossy). Frames are cut into strips
    /// encoded in parallel, once for every consumer. See docs/protocol.md.
    #[arg(long, value_name = "CODEC")]
    pub compress: Option<Compress>,

    /// Threads that encode compressed frames; each frame is cut into as many strips
    /// [default: the available cores].
    #[arg(long, value_name = "N")]
    pub compress_threads: Option<usize>,
}

/// One producer's part of a render farm: the frame indices `i` with `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// K: this producer's residue.
    pub index: u64,
    /// N: how many producers share the frames.
    pub count: u64,
}

impl Shard {
    /// Every frame: the shard of a lone producer.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// The scene's frame index of this shard's `nth` frame: `K + N × nth`.
    pub fn frame_index(&self, nth: u64) -> u64 {
        self.index.saturating_add(self.count.saturating_mul(nth))
    }

    /// Parses `K/N` with N ≥ 1 and K < N.
    fn parse(text: &str) -> Result<Self> {
        let parsed = text.split_once('/').and_then(|(k, n)| {
            Some((k.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?))
        });
        match parsed {
            Some((index, count)) if count >= 1 && index < count => Ok(Shard { index, count }),
            Some(_) => bail!("--shard {text}: K/N needs N of at least 1 and K below N"),
            None => bail!("--shard {text}: expected K/N, e.g. 0/3"),
        }
    }
}

/// Validated serve configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The render pipeline.
    pub render: RenderOptions,
    /// Where the stream goes: one or more outputs, served side by side, socket outputs first.
    pub outputs: Vec<OutputEntry>,
    /// Threads that encode compressed frames (`--compress-threads`).
    pub compress_threads: usize,
    /// Connections beyond this many are refused.
    pub max_clients: usize,
    /// Slow-client policy, when given; otherwise each output's own default (latest for
    /// sockets, lossless for stdout).
    pub policy: Option<Policy>,
    /// Frame limit.
    pub frames: Option<u64>,
    /// Time between frames when paced.
    pub frame_interval: Option<Duration>,
    /// Per-client write timeout.
    pub send_timeout: Duration,
    /// The frame indices this producer renders.
    pub shard: Shard,
    /// The control channel (`--control`), if any.
    pub control: Option<ControlConfig>,
}

/// `--control ENDPOINT` and `--on-request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Where the control socket binds: `tcp://HOST:PORT` (a bare PORT is on --bind), `ipc://PATH`.
    pub endpoint: String,
    /// Render only when a request asks, one frame per request.
    pub on_request: bool,
}

/// The most threads `--compress-threads` takes.
pub const MAX_COMPRESS_THREADS: usize = 256;

impl ServeArgs {
    /// Checks `--compress` against the format and the threads, and returns the encoding
    /// threads (the socket and ZeroMQ outputs check it against their own flags).
    fn check_compress(&self, render: &RenderOptions) -> Result<usize> {
        let threads = match self.compress_threads {
            Some(n) if !(1..=MAX_COMPRESS_THREADS).contains(&n) => {
                bail!("--compress-threads {n}: must be between 1 and {MAX_COMPRESS_THREADS}")
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let Some(compress) = self.compress else {
            if self.compress_threads.is_some() {
                bail!("--compress-threads: give --compress too");
            }
            return Ok(threads);
        };
        compress.codec.check_format(render.format)?;
        Ok(threads)
    }

    /// `--control` and `--on-request`, checked; a bare port is on `--bind`.
    fn control(&self) -> Result<Option<ControlConfig>> {
        let Some(endpoint) = &self.control else {
            if self.on_request {
                bail!("--on-request renders what control requests ask: give --control too");
            }
            return Ok(None);
        };
        if self.shard.is_some() {
            bail!(
                "--control with --shard: a steered stream renders what its requests ask, not a \
                 shard of the frame indices"
            );
        }
        let endpoint = if !endpoint.is_empty() && endpoint.bytes().all(|b| b.is_ascii_digit()) {
            let port: u16 =
                endpoint.parse().ok().filter(|&p| p > 0).ok_or_else(|| {
                    anyhow::anyhow!("--control {endpoint}: not a port (1 to 65535)")
                })?;
            match self.bind {
                IpAddr::V4(ip) => format!("tcp://{ip}:{port}"),
                IpAddr::V6(ip) => format!("tcp://[{ip}]:{port}"),
            }
        } else {
            endpoint.clone()
        };
        crate::stream::zmq::check_endpoint("--control", &endpoint)?;
        Ok(Some(ControlConfig {
            endpoint,
            on_request: self.on_request,
        }))
    }

    /// Checks every option that can be checked without GL.
    pub fn validate(&self) -> Result<ServeConfig> {
        let mut render = self.render.validate()?;
        // Whatever the outputs: a frame's byte count must fit (each output checks what its own
        // headers can describe).
        check_frame_bytes(render.width_px, render.height_px, render.format)?;
        if self.frames == Some(0) {
            bail!("--frames 0: nothing to render; leave it out to stream until stopped");
        }
        if !(1..=MAX_CLIENTS).contains(&self.max_clients) {
            bail!(
                "--max-clients {}: must be between 1 and {MAX_CLIENTS}",
                self.max_clients
            );
        }
        let frame_interval = match self.fps {
            Some(fps) => Some(seconds("--fps", 1.0 / positive("--fps", fps)?, "a rate")?),
            None => None,
        };
        render.scene.frame_rate = self.fps;
        let compress_threads = self.check_compress(&render)?;
        let control = self.control()?;
        let outputs = self.outputs.configure(&StreamSettings {
            render: &render,
            bind: self.bind,
            frame_interval,
            compress: self.compress,
        })?;
        if let Some(compress) = self.compress
            && !outputs.iter().any(|o| o.compresses())
        {
            bail!(
                "--compress {compress}: it applies to TCP, Unix, --connect, --stdout and ZeroMQ \
                 outputs, and none is asked for (shared memory and HTTP are never compressed)"
            );
        }
        let shard = match &self.shard {
            Some(text) => Shard::parse(text)?,
            None => Shard::ALL,
        };
        // A shard's frames are K, K + N, ...: a consumer that cannot tell which index a frame
        // has could not put the farm's frames back in order.
        let carries_index = outputs.iter().any(|o| o.carries_frame_index());
        if let Some(text) = &self.shard
            && !carries_index
        {
            bail!(
                "--shard {text}: the {} header carries no frame index, so consumers could not \
                 order the farm's frames; use it with --zmq-bind/--zmq-connect, --shm or \
                 --header glstream",
                self.outputs.socket.header.name()
            );
        }
        if let Some(frames) = self.frames
            && shard.index >= frames
        {
            bail!(
                "--shard {}/{} --frames {frames}: this shard has no frame below {frames}",
                shard.index,
                shard.count
            );
        }
        Ok(ServeConfig {
            render,
            outputs,
            compress_threads,
            control,
            max_clients: self.max_clients,
            policy: self.policy,
            frames: self.frames,
            frame_interval,
            send_timeout: seconds(
                "--send-timeout",
                positive("--send-timeout", self.send_timeout)?,
                "a time",
            )?,
            shard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::stream::http::HttpConfig;
    use crate::stream::protocol::HeaderMode;
    use crate::stream::shm::{ShmConfig, ShmReadback};
    use crate::stream::socket::{SocketConfig, Transport};
    use crate::stream::zmq::{Pattern, ZmqConfig};
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("glstream").chain(args.iter().copied())).unwrap()
    }

    fn error(args: &[&str]) -> String {
        parse(args).serve.validate().unwrap_err().to_string()
    }

    /// The outputs a command line configures, as their Debug text (each output's own config).
    fn listed(args: &[&str]) -> Vec<String> {
        let config = parse(args).serve.validate().unwrap();
        config.outputs.iter().map(|o| format!("{o:?}")).collect()
    }

    /// A socket output with the default header and send buffer, as [`listed`] shows it.
    fn socket(transport: Transport) -> String {
        format!(
            "{:?}",
            SocketConfig {
                compress: None,
                transport,
                header: HeaderMode::Blender,
                send_buffer: crate::cli::size::auto_send_buffer(),
            }
        )
    }

    fn tcp(addr: &str) -> String {
        socket(Transport::Tcp(addr.parse().unwrap()))
    }

    #[test]
    fn defaults_are_the_blender_setup_on_loopback() {
        let config = parse(&[]).serve.validate().unwrap();
        assert_eq!(
            (config.render.width_px, config.render.height_px),
            (800, 600)
        );
        assert_eq!(listed(&[]), [tcp("127.0.0.1:9000")], "blender header, TCP");
        assert_eq!(config.max_clients, 32);
        assert_eq!(config.render.pbo_count, 2);
        assert_eq!(config.policy, None, "each output's own default");
        assert!(config.frame_interval.is_none());
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(error(&["--width", "0"]).starts_with("--width 0"));
        assert!(error(&["--height", "0"]).starts_with("--height 0"));
        assert!(error(&["--width", "70000"]).contains("65535"));
        assert!(error(&["--pbo-count", "0"]).starts_with("--pbo-count 0"));
        assert!(error(&["--pbo-count", "17"]).starts_with("--pbo-count 17"));
        assert!(error(&["--fps", "0"]).starts_with("--fps 0"));
        assert!(error(&["--fps", "NaN"]).starts_with("--fps NaN"));
        assert!(error(&["--frames", "0"]).starts_with("--frames 0"));
        assert!(error(&["--send-timeout=-1"]).starts_with("--send-timeout"));
        assert!(error(&["--send-timeout", "1e30"]).starts_with("--send-timeout"));
        assert!(error(&["--send-timeout", "1e-12"]).starts_with("--send-timeout"));
        assert!(error(&["--fps", "1e-300"]).starts_with("--fps"));
        assert!(error(&["--fps", "1e9"]).starts_with("--fps"));
        assert!(error(&["--max-clients", "0"]).starts_with("--max-clients 0"));
        assert!(error(&["--max-clients", "18446744073709551615"]).starts_with("--max-clients"));
    }

    #[test]
    fn outputs_run_side_by_side_and_tcp_only_when_asked_or_alone() {
        let unix = || socket(Transport::Unix("/tmp/x.sock".into()));
        assert_eq!(listed(&["--unix", "/tmp/x.sock"]), [unix()]);
        assert_eq!(listed(&["--stdout"]), [socket(Transport::Stdout)]);
        assert_eq!(
            listed(&["--unix", "/tmp/x.sock", "--port", "0", "--stdout"]),
            [tcp("127.0.0.1:0"), unix(), socket(Transport::Stdout)]
        );
    }

    #[test]
    fn shm_runs_alone_or_beside_tcp_and_bad_service_names_are_refused() {
        let shm = format!(
            "{:?}",
            ShmConfig {
                service: "glstream/frames".into(),
                readback: ShmReadback::Auto,
            }
        );
        assert_eq!(
            listed(&["--shm", "glstream/frames"]),
            std::slice::from_ref(&shm),
            "no TCP listener unless --port"
        );
        assert_eq!(
            listed(&["--shm", "glstream/frames", "--port", "9000"]),
            [tcp("127.0.0.1:9000"), shm]
        );
        assert!(error(&["--shm", ""]).contains("not a valid iceoryx2 service name"));
    }

    #[test]
    fn connect_addresses_that_cannot_parse_are_refused() {
        assert!(error(&["--connect", "garbage"]).contains("HOST:PORT"));
        assert!(error(&["--connect", "127.0.0.1:99999"]).contains("not a port"));
        assert!(error(&["--connect", "127.0.0.1:0"]).contains("not a port"));
        assert!(error(&["--connect", ":9000"]).contains("host is missing"));
        // A name that does not resolve yet is retried, not refused.
        assert!(
            parse(&["--connect", "consumer.invalid:9000"])
                .serve
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn zmq_outputs_replace_the_default_tcp_listener() {
        let push = ZmqConfig {
            compress: None,
            pattern: Pattern::Push,
            bind: vec!["tcp://127.0.0.1:*".into()],
            connect: vec![],
            hwm: 2,
        };
        assert_eq!(
            listed(&["--zmq-bind", "tcp://127.0.0.1:*"]),
            [format!("{push:?}")],
            "no TCP listener"
        );
        let pubs = ZmqConfig {
            compress: None,
            pattern: Pattern::Pub,
            bind: vec![],
            connect: vec!["ipc:///tmp/a".into(), "tcp://h:1".into()],
            hwm: 2,
        };
        let listed = listed(&[
            "--zmq-connect",
            "ipc:///tmp/a",
            "--zmq-connect",
            "tcp://h:1",
            "--zmq-pattern",
            "pub",
            "--port",
            "0",
        ]);
        assert_eq!(
            listed,
            [tcp("127.0.0.1:0"), format!("{pubs:?}")],
            "--port keeps the TCP listener"
        );
        assert!(error(&["--zmq-bind", "inproc://x"]).starts_with("--zmq-bind inproc://x"));
        assert!(error(&["--zmq-connect", "localhost:5"]).starts_with("--zmq-connect"));
        assert!(error(&["--zmq-bind", "tcp://*:1", "--zmq-hwm", "0"]).starts_with("--zmq-hwm 0"));
    }

    #[test]
    fn shards_are_k_of_n_and_map_to_scene_indices() {
        let shard = |args: &[&str]| {
            let all = [&["--zmq-bind", "tcp://127.0.0.1:*"][..], args].concat();
            parse(&all).serve.validate()
        };
        let error = |args: &[&str]| shard(args).unwrap_err().to_string();
        let config = shard(&["--shard", "2/3"]).unwrap();
        assert_eq!(config.shard, Shard { index: 2, count: 3 });
        assert_eq!(
            (0..4)
                .map(|n| config.shard.frame_index(n))
                .collect::<Vec<_>>(),
            [2, 5, 8, 11]
        );
        assert_eq!(parse(&[]).serve.validate().unwrap().shard, Shard::ALL);
        assert_eq!(Shard::ALL.frame_index(7), 7);
        for bad in ["3/3", "0/0", "1", "a/b", "-1/3", "1/3/4"] {
            let arg = format!("--shard={bad}");
            assert!(error(&[&arg]).starts_with("--shard"), "{bad}");
        }
        assert!(error(&["--shard", "4/8", "--frames", "3"]).contains("no frame below 3"));
        assert!(shard(&["--shard", "2/3", "--frames", "3"]).is_ok());
        // Only where the frames carry their index.
        let blender = parse(&["--shard", "0/2"]).serve.validate().unwrap_err();
        assert!(
            blender
                .to_string()
                .starts_with("--shard 0/2: the blender header carries no frame index"),
            "{blender}"
        );
        for carrier in [&["--shm", "glstream/farm"][..], &["--header", "glstream"]] {
            let args = [&["--shard", "0/2"][..], carrier].concat();
            assert!(parse(&args).serve.validate().is_ok(), "{carrier:?}");
        }
    }

    #[test]
    fn http_runs_beside_the_others_or_alone() {
        let http = |addr: &str, allowed_hosts: &[&str]| {
            format!(
                "{:?}",
                HttpConfig {
                    addr: addr.parse().unwrap(),
                    preview_interval: Duration::from_millis(100),
                    jpeg_quality: 80,
                    frame_interval: None,
                    allowed_hosts: allowed_hosts.iter().map(|h| h.to_string()).collect(),
                }
            )
        };
        assert_eq!(
            listed(&["--http", "0"]),
            [http("127.0.0.1:0", &[])],
            "--http alone: no TCP listener"
        );
        assert_eq!(
            listed(&["--port", "9000", "--http", "8080", "--bind", "0.0.0.0"]),
            [tcp("0.0.0.0:9000"), http("0.0.0.0:8080", &[])]
        );
        assert!(error(&["--http", "0", "--jpeg-quality", "0"]).starts_with("--jpeg-quality 0"));
        assert!(error(&["--http", "0", "--preview-fps", "0"]).starts_with("--preview-fps 0"));
        assert!(error(&["--http", "0", "--header", "raw", "--width", "70000"]).contains("65535"));
        // The preview's settings without the preview would do nothing: refused.
        for flag in ["--jpeg-quality", "--preview-fps"] {
            let message = error(&[flag, "50"]);
            assert!(
                message.starts_with(&format!("{flag} applies to the HTTP output only")),
                "{message}"
            );
        }
        assert_eq!(
            listed(&[
                "--http",
                "0",
                "--http-allow-host",
                "A.example",
                "--http-allow-host",
                "[::5]",
            ]),
            [http("127.0.0.1:0", &["a.example", "::5"])]
        );
        assert!(
            error(&["--http-allow-host", "a.example"]).contains("applies to the HTTP output only")
        );
        assert!(error(&["--http", "0", "--http-allow-host", "a:1"]).contains("without a port"));
    }

    #[test]
    fn raw_header_allows_sizes_blender_cannot_describe() {
        assert!(
            parse(&["--width", "70000", "--header", "raw"])
                .serve
                .validate()
                .is_ok()
        );
    }
}
