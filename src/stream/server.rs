//! Transports and one writer per client.
//!
//! A stream goes out over one of four transports: a TCP listener (the default), a Unix domain
//! socket listener, an outgoing TCP connection to a consumer that listens (as a Blender game
//! script would; re-established with backoff when it drops), or standard output. Every client
//! gets its own writer thread that loops: take a frame from the [`Hub`], write header and payload
//! with one vectored write straight from the mapped bytes, report it sent. A slow writer holds at
//! most one frame and never blocks the render loop (latest policy) or another writer.
//!
//! A client that hangs up (reset, broken pipe, a write that makes no progress for the send
//! timeout) costs only its own thread: it is logged at info and deregistered. SIGPIPE cannot kill
//! the process: the Rust runtime sets it to ignored before `main`, so a dead peer is an `EPIPE`
//! error like any other.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use super::hub::{ClientId, Frame, Hub, Policy};
use super::protocol::{FrameInfo, HeaderMode, MAX_HEADER_LEN, ProtocolError, encode};
use crate::format::Format;

/// Fatal server errors (per-client failures are logged, never returned).
#[derive(Debug, Error)]
pub enum ServerError {
    /// The address could not be bound or listened on (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// A live server already listens on the Unix socket path.
    #[error("cannot listen on {0}: another server is listening there")]
    UnixInUse(PathBuf),
    /// The Unix socket path exists and is not a socket; it is left alone.
    #[error("cannot listen on {0}: it exists and is not a socket")]
    NotASocket(PathBuf),
    /// Standard output could not be taken over for the stream.
    #[error("cannot stream to standard output: {0}")]
    Stdout(io::Error),
    /// The frame size cannot be described by the chosen header.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A thread could not be started.
    #[error("cannot start thread: {0}")]
    Thread(io::Error),
}

/// Where the stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Listen for TCP clients on this address.
    Tcp(SocketAddr),
    /// Listen for clients on a Unix domain socket at this path.
    Unix(PathBuf),
    /// Connect out to a consumer listening at HOST:PORT; reconnect when it goes away.
    Connect(String),
    /// Write the stream to standard output (one consumer: whatever reads the pipe).
    Stdout,
}

/// Counters the GL thread reads for its once-a-second stats line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes written to all clients, headers included.
    pub bytes_sent: AtomicU64,
    /// Nanoseconds writers spent in vectored writes, summed over writers.
    pub send_ns: AtomicU64,
}

/// How every client is served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// The header before each frame.
    pub header: HeaderMode,
    /// What a slow client gets.
    pub policy: Policy,
    /// Frame width in pixels.
    pub width_px: u32,
    /// Frame height in pixels.
    pub height_px: u32,
    /// Pixel format of the payloads.
    pub format: Format,
    /// Rows top-down (`--flip`).
    pub top_down: bool,
    /// A write that makes no progress for this long drops the client.
    pub send_timeout: Duration,
    /// Connections beyond this many are refused.
    pub max_clients: usize,
}

/// A transport whose socket is bound (so a busy port fails before GL starts) but not yet served.
pub enum Bound {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix listener and its path (removed when the server ends).
    Unix(UnixListener, PathBuf),
    /// An address to connect to.
    Connect(String),
    /// Standard output, duplicated so the writer owns a plain file descriptor.
    Stdout(File),
}

/// Binds `transport`: the listener for TCP and Unix sockets, a handle on stdout.
pub fn bind(transport: &Transport) -> Result<Bound, ServerError> {
    match transport {
        Transport::Tcp(addr) => bind_tcp(*addr).map(Bound::Tcp),
        Transport::Unix(path) => bind_unix(path).map(|l| Bound::Unix(l, path.clone())),
        Transport::Connect(addr) => Ok(Bound::Connect(addr.clone())),
        Transport::Stdout => {
            use std::os::fd::AsFd;
            // Writing through a duplicate of fd 1 skips Stdout's line buffer, which would copy
            // the payload; the logs go to stderr.
            let fd = io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(ServerError::Stdout)?;
            Ok(Bound::Stdout(File::from(fd)))
        }
    }
}

/// A listening TCP socket with `SO_REUSEADDR` (a restarted server can rebind at once, but never
/// while another process listens on the port) and a backlog of 128.
fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let bind_error = |source| ServerError::Bind {
        addr: addr.to_string(),
        source,
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(bind_error)?;
    socket.set_reuse_address(true).map_err(bind_error)?;
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.listen(128).map_err(bind_error)?;
    Ok(socket.into())
}

/// Binds a Unix socket, replacing a stale socket file (nobody accepts on it) but never a live
/// one, and never a file that is not a socket.
fn bind_unix(path: &Path) -> Result<UnixListener, ServerError> {
    let bind_error = |source| ServerError::Bind {
        addr: path.display().to_string(),
        source,
    };
    match UnixListener::bind(path) {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let meta = std::fs::symlink_metadata(path).map_err(bind_error)?;
            if !meta.file_type().is_socket() {
                return Err(ServerError::NotASocket(path.to_path_buf()));
            }
            match UnixStream::connect(path) {
                Ok(_) => Err(ServerError::UnixInUse(path.to_path_buf())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    log::info!("replacing stale socket {}", path.display());
                    std::fs::remove_file(path).map_err(bind_error)?;
                    UnixListener::bind(path).map_err(bind_error)
                }
                Err(e) => Err(bind_error(e)),
            }
        }
        Err(e) => Err(bind_error(e)),
    }
}

/// One client's byte sink.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    Stdout(File),
}

impl Conn {
    fn configure(&self, send_timeout: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(send_timeout))
            }
            Conn::Unix(s) => s.set_write_timeout(Some(send_timeout)),
            Conn::Stdout(_) => Ok(()),
        }
    }

    fn close(&mut self) {
        let _ = self.flush();
        match self {
            Conn::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Conn::Unix(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Conn::Stdout(_) => {}
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            Conn::Stdout(f) => f.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write_vectored(bufs),
            Conn::Unix(s) => s.write_vectored(bufs),
            Conn::Stdout(f) => f.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
            Conn::Stdout(f) => f.flush(),
        }
    }
}

/// What every writer shares.
struct Shared<F> {
    hub: Arc<Hub<F>>,
    stats: Arc<Stats>,
    options: ServeOptions,
}

impl<F> Shared<F> {
    /// The header for one frame. Size and format were checked when the server started, so
    /// encoding cannot fail here.
    fn header(&self, frame: &F, out: &mut [u8; MAX_HEADER_LEN]) -> usize
    where
        F: Frame,
    {
        let info = FrameInfo {
            width_px: self.options.width_px,
            height_px: self.options.height_px,
            format: self.options.format,
            top_down: self.options.top_down,
            frame_index: frame.frame_index(),
            timestamp_ns: frame.timestamp_ns(),
        };
        encode(self.options.header, &info, out).unwrap_or(0)
    }
}

/// A running transport. Dropping it removes a Unix socket file it created.
pub struct Server {
    announcement: Option<String>,
    unix_path: Option<PathBuf>,
    closed: Arc<AtomicBool>,
}

impl Server {
    /// Starts serving `bound`: accept loop, connector or the stdout writer, each on its own thread.
    pub fn start<F: Frame>(
        bound: Bound,
        hub: Arc<Hub<F>>,
        options: ServeOptions,
        stats: Arc<Stats>,
    ) -> Result<Self, ServerError> {
        options
            .header
            .check_size(options.width_px, options.height_px, options.format)?;
        let shared = Arc::new(Shared {
            hub,
            stats,
            options,
        });
        let closed = Arc::new(AtomicBool::new(false));
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map(drop)
                .map_err(ServerError::Thread)
        };
        let (announcement, unix_path) = match bound {
            Bound::Tcp(listener) => {
                let addr = listener.local_addr().map_err(|source| ServerError::Bind {
                    addr: "TCP listener".into(),
                    source,
                })?;
                let shared = Arc::clone(&shared);
                spawn(
                    "accept",
                    Box::new(move || {
                        accept_loop(&shared, || {
                            let (s, peer) = listener.accept()?;
                            Ok((Conn::Tcp(s), peer.to_string()))
                        })
                    }),
                )?;
                (Some(format!("listening on {addr}")), None)
            }
            Bound::Unix(listener, path) => {
                let shared = Arc::clone(&shared);
                let name = path.display().to_string();
                spawn(
                    "accept",
                    Box::new(move || {
                        let mut n = 0u64;
                        accept_loop(&shared, || {
                            let (s, _) = listener.accept()?;
                            n += 1;
                            Ok((Conn::Unix(s), format!("unix#{n}")))
                        })
                    }),
                )?;
                (Some(format!("listening on unix:{name}")), Some(path))
            }
            Bound::Connect(addr) => {
                let shared = Arc::clone(&shared);
                let target = addr.clone();
                spawn("connect", Box::new(move || connect_loop(&shared, &target)))?;
                (Some(format!("connecting to {addr}")), None)
            }
            Bound::Stdout(file) => {
                // Registered before any frame is rendered, so stdout gets frame 0 first.
                let id = shared.hub.register(options.policy);
                let shared = Arc::clone(&shared);
                let closed = Arc::clone(&closed);
                spawn(
                    "stdout",
                    Box::new(move || {
                        serve_client(&shared, id, Conn::Stdout(file), "stdout");
                        closed.store(true, Ordering::SeqCst);
                    }),
                )?;
                (None, None)
            }
        };
        Ok(Self {
            announcement,
            unix_path,
            closed,
        })
    }

    /// The line to print on stdout once the server is ready (`listening on ...`); none when the
    /// stream itself is on stdout.
    pub fn announcement(&self) -> Option<&str> {
        self.announcement.as_deref()
    }

    /// True once a transport that cannot get a new client (stdout) has lost its one consumer.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn accept_loop<F: Frame>(
    shared: &Arc<Shared<F>>,
    mut accept: impl FnMut() -> io::Result<(Conn, String)>,
) {
    loop {
        let (conn, peer) = match accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays up.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let connected = shared.hub.client_count();
        if connected >= shared.options.max_clients {
            log::info!(
                "refusing client {peer}: {connected} connected already (--max-clients {})",
                shared.options.max_clients
            );
            continue;
        }
        if let Err(e) = conn.configure(shared.options.send_timeout) {
            log::info!("client {peer}: cannot configure socket, dropping it: {e}");
            continue;
        }
        let id = shared.hub.register(shared.options.policy);
        log::info!(
            "client {peer} connected ({} connected)",
            shared.hub.client_count()
        );
        let writer = Arc::clone(shared);
        let name = format!("client {peer}");
        let spawned = thread::Builder::new()
            .name(name)
            .spawn(move || serve_client(&writer, id, conn, &peer));
        if let Err(e) = spawned {
            log::warn!("cannot start a writer thread, dropping the client: {e}");
            shared.hub.deregister(id);
        }
    }
}

/// Connects to a listening consumer, serves it until it goes away, and tries again with
/// exponential backoff (100 ms doubling to 5 s) until the stream finishes.
fn connect_loop<F: Frame>(shared: &Arc<Shared<F>>, addr: &str) {
    const FIRST: Duration = Duration::from_millis(100);
    const LONGEST: Duration = Duration::from_secs(5);
    let mut backoff = FIRST;
    let mut reported = false;
    while !shared.hub.is_finished() {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                let conn = Conn::Tcp(stream);
                if let Err(e) = conn.configure(shared.options.send_timeout) {
                    log::info!("{addr}: cannot configure socket: {e}");
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(LONGEST);
                    continue;
                }
                backoff = FIRST;
                reported = false;
                let id = shared.hub.register(shared.options.policy);
                log::info!("connected to {addr}");
                serve_client(shared, id, conn, addr);
            }
            Err(e) => {
                if !reported {
                    log::info!("cannot connect to {addr} ({e}); retrying with backoff");
                    reported = true;
                } else {
                    log::debug!("cannot connect to {addr}: {e}; next try in {backoff:?}");
                }
                thread::sleep(backoff);
                backoff = (backoff * 2).min(LONGEST);
            }
        }
    }
}

/// The writer loop of one client; returns when the client fails or the stream ends.
fn serve_client<F: Frame>(shared: &Shared<F>, id: ClientId, mut conn: Conn, peer: &str) {
    let hub = &shared.hub;
    let mut header = [0u8; MAX_HEADER_LEN];
    let mut failure = None;
    while let Some(frame) = hub.next_frame(id) {
        let sequence = frame.sequence();
        let header_len = shared.header(&frame, &mut header);
        let started = Instant::now();
        let result = write_frame(&mut conn, &header[..header_len], frame.bytes());
        drop(frame);
        shared
            .stats
            .send_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match result {
            Ok(written) => {
                shared
                    .stats
                    .bytes_sent
                    .fetch_add(written as u64, Ordering::Relaxed);
                hub.sent(id, sequence);
                log::trace!("client {peer}: sent frame {sequence}");
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    conn.close();
    let totals = hub.deregister(id);
    let remaining = hub.client_count();
    match failure {
        Some(e) => log::info!(
            "client {peer} dropped after {} frames ({} skipped): {e} ({remaining} connected)",
            totals.sent,
            totals.skipped
        ),
        None => log::info!(
            "client {peer} done after {} frames ({} skipped)",
            totals.sent,
            totals.skipped
        ),
    }
}

/// Writes header then payload with vectored writes until both are out; returns bytes written.
fn write_frame(stream: &mut impl Write, header: &[u8], payload: &[u8]) -> io::Result<usize> {
    let mut buffers = [IoSlice::new(header), IoSlice::new(payload)];
    let mut remaining = &mut buffers[..];
    // An empty header (raw mode) would make the first writev report 0 bytes for it; skip it.
    IoSlice::advance_slices(&mut remaining, 0);
    let total = header.len() + payload.len();
    while !remaining.is_empty() {
        match stream.write_vectored(remaining) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut remaining, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that accepts at most 5 bytes per call, to exercise partial vectored writes.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(5);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            self.write(first)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_vectored_writes_send_everything_in_order() {
        let mut sink = Trickle(Vec::new());
        let payload: Vec<u8> = (0..23).collect();
        assert_eq!(write_frame(&mut sink, b"HEADER", &payload).unwrap(), 29);
        assert_eq!(&sink.0[..6], b"HEADER");
        assert_eq!(&sink.0[6..], &payload[..]);
        let mut raw = Trickle(Vec::new());
        write_frame(&mut raw, b"", &payload).unwrap();
        assert_eq!(raw.0, payload);
    }

    #[test]
    fn unix_bind_replaces_stale_sockets_only() {
        let dir = std::env::temp_dir().join(format!("glstream-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let live = bind_unix(&path).unwrap();
        assert!(matches!(bind_unix(&path), Err(ServerError::UnixInUse(_))));
        drop(live);
        // The file is still there but nobody listens: stale, so it is replaced.
        assert!(path.exists());
        let _again = bind_unix(&path).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, b"keep me").unwrap();
        assert!(matches!(bind_unix(&plain), Err(ServerError::NotASocket(_))));
        assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
