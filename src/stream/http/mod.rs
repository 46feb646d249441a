//! The HTTP output (`--http PORT`): a page that shows the stream live, the stream as MJPEG, the
//! newest frame as a PNG, Prometheus metrics and a health check, for browsers, VLC, ffmpeg,
//! OpenCV, scripts and monitoring.
//!
//! **Endpoints** (GET or HEAD; anything else is 405, an unknown path 404):
//! - `/`: the page ([`PAGE`], no external resources), which shows `/stream.mjpg` and polls
//!   `/stats.json`.
//! - `/stream.mjpg`: `multipart/x-mixed-replace; boundary=glstreamframe`, one JPEG per part
//!   (`Content-Type`, `Content-Length` and `X-Frame-Index` headers), rows top-down. Each viewer is
//!   a hub client of the latest policy (so it wakes an idle renderer and counts against
//!   `--max-clients`) that takes a frame at most every `1/--preview-fps` ([`Sink::next_due`]):
//!   the frames in between are skipped by the hub, never taken. A frame is encoded only when its
//!   viewer has taken the previous part, and only once for every viewer that gets it (the newest
//!   part is shared), so with no viewer JPEG costs nothing, and a slow viewer skips frames. One
//!   that takes nothing for `--send-timeout` is dropped and its connection closed.
//! - `/frame.png`: the next frame published, as a PNG, top-down, with `X-Frame-Index` (and
//!   `X-Frame-Sequence`). It is a one-frame hub client: on a stream that runs it costs the
//!   renderer nothing; on an idle server it wakes the renderer for one frame, which is frame 0
//!   of a new run (as for any client of an idle server), so a script gets a frame whether or not
//!   anyone watches. 503 once the stream is over or `--max-clients` are connected.
//! - `/metrics`: Prometheus/OpenMetrics text from `prometheus-client`; see [`Metrics`] for the
//!   names. Reading it never wakes the renderer.
//! - `/healthz`: 200 while the stream runs and either nobody is connected (idle: nothing to
//!   render) or a frame was rendered recently; 503 otherwise. Never wakes the renderer.
//! - `/stats.json`: what the page shows: `frame_index` is the newest frame the stream published
//!   (to any output), `dropped_frames` the preview slots viewers missed because their connection
//!   was still writing the part before ([`OutputCounters::missed`]); the frames a viewer skips on
//!   purpose to keep to `--preview-fps` are not drops.
//!
//! **Threads.** One scoped thread runs a current-thread tokio runtime with hyper's HTTP/1 server:
//! it accepts, parses requests and writes responses for every connection. Blocking work runs on
//! scoped threads of its own: one per MJPEG viewer (its [`serve_sink`] loop: copy, flip and
//! encode from the frame, then hand the part to the connection through a channel of one) and one
//! per `/frame.png` request. Frames never enter the runtime; only encoded bytes do. Every thread
//! ends once the hub is finished (a small thread blocked on the hub wakes the runtime then).
//!
//! **Bad clients.** Request headers must arrive within [`HEADER_TIMEOUT`] (slow loris) and fit
//! in [`MAX_HEADER_BYTES`] (431 otherwise); at most `--max-clients` + [`SPARE_CONNECTIONS`]
//! connections are open at once, the rest are closed at accept. Every response has a write
//! deadline of `--send-timeout` ([`WriteDeadline`]): a whole response for one with a body known
//! up front, each part for `/stream.mjpg`; a connection whose peer does not read its response by
//! then is closed and its slot freed (a client that pipelines requests and never reads cannot
//! hold a slot for longer). None of it blocks another connection: they are all polled on one
//! thread and none of them waits on a frame.
//!
//! **Host names** ([`HostCheck`]): on a loopback address, or whenever `--http-allow-host` is
//! given, a request whose `Host` (or absolute URI) names anything but `localhost`, a `127.x.x.x`
//! address, `[::1]`, the bound address or a `--http-allow-host` name (any port) is refused with
//! 421, so a web page whose name was rebound to 127.0.0.1 (DNS rebinding) cannot read the stream
//! or the metrics. A request without `Host` (HTTP/1.0 tools) is served: browsers always send one.
//! No response carries CORS headers, so no other origin's script may read one.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::thread::{self, Scope};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame as BodyFrame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc, oneshot};

use super::encode::{Encoder, Encoding, Target};
use super::hub::{Frame, Policy};
use super::metrics::{HistogramSnapshot, OutputCounters, OutputTotals};
use super::output::{
    BindError, Deadline, Feed, FrameShape, Output, OutputConfig, OutputError, SendError, Sink,
    serve_sink,
};

mod deadline;
mod host;
mod mjpeg;
mod prometheus;

use deadline::*;
use host::*;
use mjpeg::*;
use prometheus::*;

/// The page at `/`: plain HTML, CSS and JavaScript, nothing fetched from elsewhere.
pub const PAGE: &str = include_str!("page.html");

/// The multipart boundary of `/stream.mjpg`.
pub const BOUNDARY: &str = "glstreamframe";

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The most bytes of request headers accepted (431 beyond).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Connections allowed beyond `--max-clients` (page loads, scrapes, health checks).
pub const SPARE_CONNECTIONS: usize = 64;

/// The name of this output in the per-output counters and `/metrics` labels.
pub const OUTPUT_NAME: &str = "http";

/// A validated HTTP output.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Address to listen on (`--bind`, `--http`).
    pub addr: SocketAddr,
    /// Shortest time between two frames to one viewer (`1 / --preview-fps`).
    pub preview_interval: Duration,
    /// JPEG quality, 1 to 100.
    pub jpeg_quality: u8,
    /// The render loop's pace (`--fps`), if any: a health check allows for it.
    pub frame_interval: Option<Duration>,
    /// Host names answered besides the loopback names and the bound address
    /// (`--http-allow-host`, lower case, without a port). Given any, they apply on every
    /// address; given none, only a loopback address checks `Host`.
    pub allowed_hosts: Vec<String>,
}

impl<F: Frame> OutputConfig<F> for HttpConfig {
    fn carries_frame_index(&self) -> bool {
        // X-Frame-Index on every part, but a preview skips frames: no farm collects from it.
        false
    }

    fn bind(&self) -> Result<Box<dyn Output<F>>, BindError> {
        Ok(Box::new(bind(self)?))
    }
}

/// Why the HTTP output could not be set up.
#[derive(Debug, Error)]
pub enum HttpError {
    /// The address could not be bound.
    #[error("cannot listen on {addr} (--http)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

/// The HTTP output, its port bound (so a busy port fails before GL starts) but not yet served.
pub struct HttpOutput {
    listener: TcpListener,
    config: HttpConfig,
}

/// Binds the HTTP port.
pub fn bind(config: &HttpConfig) -> Result<HttpOutput, HttpError> {
    let bind_error = |source| HttpError::Bind {
        addr: config.addr,
        source,
    };
    let listener = TcpListener::bind(config.addr).map_err(bind_error)?;
    // tokio takes over the socket and requires it non-blocking.
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(HttpOutput {
        listener,
        config: config.clone(),
    })
}

impl HttpOutput {
    /// The address bound (the port, when 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

impl<F: Frame> Output<F> for HttpOutput {
    fn policy(&self, _chosen: Option<Policy>) -> Policy {
        // A viewer skips frames whatever --policy says: it must never stall anything.
        Policy::Latest
    }

    fn announcement(&self) -> Option<String> {
        self.local_addr()
            .map(|addr| format!("http listening on http://{addr}/"))
    }

    fn start<'scope, 'env>(
        self: Box<Self>,
        scope: &'scope Scope<'scope, 'env>,
        feed: &'env Feed<F>,
        _policy: Policy,
    ) -> Result<(), OutputError> {
        // Viewers and /frame.png are latest-policy clients whatever --policy says (see
        // `policy`): a preview never holds the stream up.
        let thread_error = |what: &str| {
            let what = what.to_string();
            move |source| OutputError::Thread { what, source }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(thread_error("http runtime"))?;
        let HttpOutput { listener, config } = *self;
        // Viewers' JPEGs come from the feed's encode stage: one encoding of a frame for every
        // viewer that takes it.
        let jpeg = feed.encoder(
            scope,
            Target::Preview {
                quality: config.jpeg_quality,
            },
            Policy::Latest,
        )?;
        let shared = Arc::new(Shared {
            counters: feed.stats.outputs.output(OUTPUT_NAME),
            jpeg,
            busy_since: Mutex::new(None),
            handoffs: Handoffs::default(),
            hosts: HostCheck::new(&config),
            config,
        });
        // The stream's end, carried into the runtime: this thread blocks on the hub until it is
        // finished and then wakes the server, which needs no timer to look.
        let over = Arc::new(Notify::new());
        let stream_over = Arc::clone(&over);
        let viewers = Arc::clone(&shared);
        thread::Builder::new()
            .name("http end".into())
            .spawn_scoped(scope, move || {
                while !feed.hub.wait_finished(Duration::from_secs(3600)) {}
                viewers.handoffs.end();
                stream_over.notify_one();
            })
            .map_err(thread_error("http end"))?;
        thread::Builder::new()
            .name("http".into())
            .spawn_scoped(scope, move || {
                let server = Server {
                    scope,
                    feed,
                    shared,
                };
                runtime.block_on(server.run(listener, &over));
                // Connections still open were closed when `run` returned; nothing else is left.
                runtime.shutdown_background();
            })
            .map(drop)
            .map_err(thread_error("http"))
    }
}

/// What the server's threads share.
struct Shared {
    config: HttpConfig,
    counters: Arc<OutputCounters>,
    /// The encode stage's JPEG encoder for the viewers.
    jpeg: Arc<Encoder>,
    /// Since when clients have been connected, as seen by health checks.
    busy_since: Mutex<Option<Instant>>,
    /// Every MJPEG viewer's hand-off to its connection, ended with the stream.
    handoffs: Handoffs,
    /// Which `Host` names are answered.
    hosts: HostCheck,
}

struct Server<'scope, 'env, F: Frame> {
    scope: &'scope Scope<'scope, 'env>,
    feed: &'env Feed<F>,
    shared: Arc<Shared>,
}

type ResponseBody = BoxBody<Bytes, Infallible>;

impl<'scope, 'env, F: Frame + 'env> Server<'scope, 'env, F> {
    async fn run(&self, listener: TcpListener, over: &Notify) {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                self.feed.fail(format!("cannot serve HTTP: {e}"));
                return;
            }
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(MAX_HEADER_BYTES.max(8192) * 2);
        let max_connections = self.feed.max_clients + SPARE_CONNECTIONS;
        let mut connections = FuturesUnordered::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if connections.len() >= max_connections {
                            log::info!(
                                "http: refusing {peer}: {max_connections} connections open \
                                 (--max-clients + {SPARE_CONNECTIONS})"
                            );
                            continue;
                        }
                        if let Err(e) = stream.set_nodelay(true) {
                            log::debug!("http: {peer}: cannot set TCP_NODELAY: {e}");
                        }
                        // Set off by a viewer's thread when it gives up on the viewer: its
                        // connection may be stuck writing to a peer that reads nothing.
                        let cut = Arc::new(Notify::new());
                        let deadline = Arc::new(WriteDeadline::new(self.feed.send_timeout));
                        let service = {
                            let (cut, deadline) = (Arc::clone(&cut), Arc::clone(&deadline));
                            service_fn(move |request| {
                                let (cut, deadline) = (Arc::clone(&cut), Arc::clone(&deadline));
                                async move {
                                    let response = self.handle(request, peer, cut).await;
                                    deadline.arm();
                                    Ok::<_, Infallible>(response.map(|body| TimedBody {
                                        inner: body,
                                        deadline,
                                    }))
                                }
                            })
                        };
                        let stream = DeadlineStream {
                            stream,
                            deadline,
                            // The write deadline's timer, not a wait: `DeadlineStream` re-arms
                            // it to each response's deadline before polling it.
                            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
                            peer,
                            counters: Arc::clone(&self.shared.counters),
                        };
                        let connection = http.serve_connection(TokioIo::new(stream), service);
                        connections.push(async move {
                            tokio::select! {
                                result = connection => {
                                    if let Err(e) = result {
                                        log::debug!("http: {peer}: {e}");
                                    }
                                }
                                () = cut.notified() => log::debug!("http: {peer}: closed"),
                            }
                        });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        log::warn!("http: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(()) = connections.next(), if !connections.is_empty() => {}
                () = over.notified() => break,
            }
        }
    }

    /// Answers one request. Nothing here blocks: frames are taken on threads of their own.
    async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        cut: Arc<Notify>,
    ) -> Response<ResponseBody> {
        if let Err(host) = self.shared.hosts.check(&request) {
            log::info!(
                "http: {peer}: Host {host:?} refused (not a loopback name; see --http-allow-host)"
            );
            return text(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {host:?} is not served here: glstream answers loopback names and the \
                     names given with --http-allow-host\n"
                ),
            );
        }
        let head = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                log::debug!("http: {peer}: {} refused", request.method());
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "only GET and HEAD are served\n",
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return response;
            }
        };
        match request.uri().path() {
            "/" | "/index.html" => respond(StatusCode::OK, "text/html; charset=utf-8", PAGE),
            "/stream.mjpg" if head => mjpeg_response(empty()),
            "/stream.mjpg" => self.viewer(peer, cut),
            "/frame.png" => self.frame_png().await,
            "/metrics" => respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics(),
            ),
            "/healthz" => {
                let (healthy, message) = self.health();
                let status = if healthy {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                text(status, message)
            }
            "/stats.json" => respond(StatusCode::OK, "application/json", self.stats_json()),
            path => {
                log::debug!("http: {peer}: no {path}");
                text(StatusCode::NOT_FOUND, format!("no {path} here\n"))
            }
        }
    }

    /// Why a new client cannot be taken now, if it cannot.
    fn refusal(&self) -> Option<String> {
        if self.feed.hub.is_finished() {
            return Some("the stream is over\n".into());
        }
        let connected = self.feed.hub.client_count();
        if connected >= self.feed.max_clients {
            self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Some(format!(
                "{connected} clients connected already (--max-clients {})\n",
                self.feed.max_clients
            ));
        }
        None
    }

    /// Starts an MJPEG viewer: a hub client fed by a thread of its own.
    fn viewer(&self, peer: SocketAddr, cut: Arc<Notify>) -> Response<ResponseBody> {
        if let Some(reason) = self.refusal() {
            log::info!("http: refusing viewer {peer}: {}", reason.trim_end());
            return text(StatusCode::SERVICE_UNAVAILABLE, reason);
        }
        let feed = self.feed;
        let jpeg = self.shared.jpeg.demand(&feed.stats.stages.encode);
        let id = feed.register(OUTPUT_NAME, Policy::Latest);
        let (parts, receiver) = mpsc::channel(1);
        let handoff = self.shared.handoffs.add();
        let sink = ViewerSink {
            parts,
            jpeg,
            handoff: Arc::clone(&handoff),
            shared: Arc::clone(&self.shared),
            send_timeout: feed.send_timeout,
            last_sent: None,
            queued_at: None,
            missed_at: None,
        };
        let name = format!("http viewer {peer}");
        let spawned =
            thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(self.scope, move || {
                    let departure = serve_sink(feed, id, sink, &name);
                    if departure.failure.is_some() {
                        cut.notify_one();
                    }
                });
        if let Err(e) = spawned {
            log::warn!("http: cannot start a viewer thread: {e}");
            feed.deregister(id);
            return text(StatusCode::SERVICE_UNAVAILABLE, "cannot start a viewer\n");
        }
        mjpeg_response(MjpegBody { receiver, handoff }.boxed())
    }

    /// `/frame.png`: the next frame published, from a one-frame hub client on a thread of its
    /// own; the response waits for it without blocking the runtime.
    async fn frame_png(&self) -> Response<ResponseBody> {
        if let Some(reason) = self.refusal() {
            return text(StatusCode::SERVICE_UNAVAILABLE, reason);
        }
        let feed = self.feed;
        let (done, result) = oneshot::channel();
        let id = feed.register(OUTPUT_NAME, Policy::Latest);
        let spawned = thread::Builder::new()
            .name("http frame.png".into())
            .spawn_scoped(self.scope, move || {
                // The frame is copied and let go at once; the PNG is encoded from the copy.
                let still = feed.hub.next_frame(id).map(|frame| {
                    let still = (
                        frame.frame_index(),
                        frame.sequence(),
                        frame.bytes().to_vec(),
                    );
                    feed.hub.sent(id, frame.sequence());
                    still
                });
                feed.deregister(id);
                let png = still.map(|(frame_index, sequence, pixels)| {
                    let png = crate::capture::frame_png(&feed.shape, &pixels);
                    (frame_index, sequence, png)
                });
                let _ = done.send(png);
            });
        if let Err(e) = spawned {
            log::warn!("http: cannot start a frame.png thread: {e}");
            feed.deregister(id);
            return text(StatusCode::SERVICE_UNAVAILABLE, "cannot take a frame\n");
        }
        match result.await {
            Ok(Some((frame_index, sequence, Ok(png)))) => {
                let mut response = respond(StatusCode::OK, "image/png", png);
                let headers = response.headers_mut();
                headers.insert("x-frame-index", HeaderValue::from(frame_index));
                headers.insert("x-frame-sequence", HeaderValue::from(sequence));
                response
            }
            Ok(Some((_, _, Err(e)))) => {
                log::warn!("http: cannot encode frame.png: {e:#}");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the frame: {e:#}\n"),
                )
            }
            Ok(None) | Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the stream ended before a frame came\n",
            ),
        }
    }

    /// The Prometheus exposition of this stream's counters.
    fn metrics(&self) -> String {
        let stats = &self.feed.stats;
        let snapshot = Metrics {
            frames_rendered: stats.frames_rendered.load(Ordering::Relaxed),
            bytes_sent: stats.bytes_sent.load(Ordering::Relaxed),
            outputs: stats.outputs.snapshot(),
            stages: stats
                .stages
                .named()
                .into_iter()
                .map(|(name, histogram)| (name, histogram.snapshot()))
                .collect(),
        };
        let mut registry = Registry::with_prefix("glstream");
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            log::warn!("http: cannot encode the metrics: {e}");
        }
        text
    }

    /// Whether the stream is healthy, and a line that says how it is.
    fn health(&self) -> (bool, String) {
        let feed = self.feed;
        if feed.hub.is_finished() || feed.is_ended() {
            return (false, "stream over\n".into());
        }
        let clients = feed.hub.client_count();
        let mut busy_since = self
            .shared
            .busy_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if clients == 0 {
            *busy_since = None;
            return (true, "ok: idle, no client (nothing to render)\n".into());
        }
        let busy_for = busy_since.get_or_insert_with(Instant::now).elapsed();
        let stale_after = self
            .shared
            .config
            .frame_interval
            .map_or(STALE_AFTER, |interval| STALE_AFTER.max(interval * 3));
        let frames = feed.stats.frames_rendered.load(Ordering::Relaxed);
        match unix_ns().checked_sub(feed.stats.last_frame_ns.load(Ordering::Relaxed)) {
            Some(age_ns) if feed.stats.last_frame_ns.load(Ordering::Relaxed) > 0 => {
                let age = Duration::from_nanos(age_ns);
                let line = format!(
                    "{}: {}, {frames} frames rendered, the last {} ms ago\n",
                    if age < stale_after || busy_for < stale_after {
                        "ok"
                    } else {
                        "stalled"
                    },
                    super::plural(clients, "client"),
                    age.as_millis()
                );
                (age < stale_after || busy_for < stale_after, line)
            }
            _ if busy_for < stale_after => (
                true,
                format!(
                    "ok: {}, the first frame is being rendered\n",
                    super::plural(clients, "client")
                ),
            ),
            _ => (
                false,
                format!(
                    "stalled: {} for {} s and no frame rendered\n",
                    super::plural(clients, "client"),
                    busy_for.as_secs()
                ),
            ),
        }
    }

    /// What the page shows.
    fn stats_json(&self) -> String {
        let feed = self.feed;
        let shape = &feed.shape;
        let outputs: Vec<serde_json::Value> = feed
            .stats
            .outputs
            .snapshot()
            .into_iter()
            .map(|o| {
                serde_json::json!({
                    "output": o.output,
                    "connected": o.connected,
                    "dropped": o.dropped,
                    "refused": o.refused,
                    "skipped": o.skipped,
                    "missed": o.missed,
                    "frames": o.frames,
                    "bytes": o.bytes,
                })
            })
            .collect();
        let missed: u64 = outputs.iter().filter_map(|o| o["missed"].as_u64()).sum();
        serde_json::json!({
            // The stream's newest frame, whichever output took it.
            "frame_index": feed.hub.newest_frame_index(),
            "dropped_frames": missed,
            "frames_rendered": feed.stats.frames_rendered.load(Ordering::Relaxed),
            "width": shape.width_px,
            "height": shape.height_px,
            "format": shape.format.name(),
            "preview_fps": 1.0 / self.shared.config.preview_interval.as_secs_f64(),
            "clients": feed.hub.client_count(),
            "outputs": outputs,
        })
        .to_string()
    }
}

/// A health check says "stalled" when clients have waited this long without a frame.
const STALE_AFTER: Duration = Duration::from_secs(5);

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn empty() -> ResponseBody {
    Full::new(Bytes::new()).boxed()
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    respond(status, "text/plain; charset=utf-8", body)
}

fn mjpeg_response(body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("multipart/x-mixed-replace; boundary=glstreamframe"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(addr: &str, allowed: &[&str]) -> HostCheck {
        HostCheck::new(&HttpConfig {
            addr: addr.parse().unwrap(),
            preview_interval: Duration::from_millis(100),
            jpeg_quality: 80,
            frame_interval: None,
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn allows(check: &HostCheck, host: &str) -> bool {
        let request = Request::get("/stats.json")
            .header(header::HOST, host)
            .body(())
            .unwrap();
        check.check(&request).is_ok()
    }

    #[test]
    fn a_loopback_server_answers_loopback_names_only() {
        let loopback = check("127.0.0.1:8080", &[]);
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.:1",
            "127.0.0.1",
            "127.9.9.9:80",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(allows(&loopback, host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "[::2]:8080",
            "localhost:port",
            "localhost:123456",
            "[::1",
            "",
        ] {
            assert!(!allows(&loopback, host), "{host}");
        }
        // No Host at all (an HTTP/1.0 tool) is served.
        assert!(loopback.check(&Request::get("/").body(()).unwrap()).is_ok());
    }

    #[test]
    fn allowed_names_add_to_the_list_and_apply_on_any_address() {
        let public = check("0.0.0.0:8080", &[]);
        assert!(allows(&public, "evil.example"), "no list: any host");
        let listed = check("192.168.1.5:8080", &["frames.example", "::5"]);
        for host in [
            "frames.example:8080",
            "FRAMES.EXAMPLE",
            "192.168.1.5:8080",
            "localhost",
            "[::5]:1",
        ] {
            assert!(allows(&listed, host), "{host}");
        }
        assert!(!allows(&listed, "evil.example"));
    }
}
