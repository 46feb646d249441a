//! The socket outputs: a TCP listener (the default), a Unix domain socket listener, an outgoing
//! TCP connection to a consumer that listens (as a Blender game script would), and standard
//! output. Each consumer is a [`Conn`]: a [`Sink`] that writes the header and the payload with
//! vectored writes straight from the mapped bytes, waiting for the consumer with `poll` so that a
//! frame has one deadline, not one per syscall.
//!
//! A consumer that hangs up costs only its own thread. SIGPIPE cannot kill the process: the Rust
//! runtime sets it to ignored before `main`, so a dead peer is an `EPIPE` error like any other.
//! At the end of a stream a socket is shut down for writing and the consumer's own bytes are
//! read and discarded until it closes (bounded by the send timeout): closing a socket with unread
//! input makes Linux send a reset, which would throw away the last frames still queued for it.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::{self, Scope};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::OFlags;
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use super::encode::Target;
use super::hub::{ClientId, Frame, Policy};
use super::output::{
    BindError, Deadline, Feed, FrameShape, Framing, Held, Output, OutputConfig, OutputError,
    SendError, Sink, serve_sink,
};
use super::protocol::HeaderMode;
use crate::codec::Compress;

/// Why a socket output could not be set up.
#[derive(Debug, Error)]
pub enum SocketError {
    /// The address could not be bound or listened on (in use, not local, no permission).
    #[error("cannot listen on {addr}")]
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
    #[error("cannot stream to standard output")]
    Stdout(#[source] io::Error),
}

/// Where a socket stream goes.
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

/// The send buffer each TCP consumer's socket gets (`SO_SNDBUF`).
///
/// Measured on llvmpipe (see README, Performance): with the kernel's autotuned buffer (up to
/// `tcp_wmem`'s 4 MiB) a consumer on the same machine spent a third more CPU per 1080p frame than
/// with a buffer the size of one core's L2 cache, and e2e fps was 10–20 % lower; a buffer much
/// smaller than that (128 KiB asked) was slower again at 800×600.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendBuffer {
    /// Leave the kernel's autotuning alone.
    System,
    /// Ask for this many bytes (Linux doubles it for bookkeeping and caps the request at
    /// `net.core.wmem_max`).
    Bytes(usize),
    /// This many bytes for a consumer on this machine (a loopback peer), where a small buffer
    /// measured fastest; the kernel's autotuning for a remote one, where a fixed cap would
    /// limit a link with a real round-trip time (`--send-buffer auto`).
    Loopback(usize),
}

impl SendBuffer {
    /// The send buffer a consumer at `peer` gets, or `None` for the kernel's autotuning.
    pub fn for_peer(self, peer: std::net::IpAddr) -> Option<usize> {
        match self {
            SendBuffer::Bytes(bytes) => Some(bytes),
            SendBuffer::Loopback(bytes) if peer.is_loopback() => Some(bytes),
            SendBuffer::Loopback(_) | SendBuffer::System => None,
        }
    }
}

impl std::fmt::Display for SendBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendBuffer::System => f.write_str("the kernel's autotuned size"),
            SendBuffer::Bytes(n) if n % 1024 == 0 => write!(f, "{} KiB", n / 1024),
            SendBuffer::Bytes(n) => write!(f, "{n} bytes"),
            SendBuffer::Loopback(n) => write!(
                f,
                "{} on loopback, the kernel's autotuned size otherwise",
                SendBuffer::Bytes(*n)
            ),
        }
    }
}

/// A socket output whose socket is bound (so a busy port fails before GL starts) but not yet
/// served.
pub struct SocketOutput {
    bound: Bound,
    header: HeaderMode,
    send_buffer: SendBuffer,
    compress: Option<Compress>,
}

enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, OwnedPath),
    Connect(String),
    Stdout(File),
}

/// A socket output as configured: where the stream goes, the header before each frame, and the
/// send buffer TCP consumers get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    /// Where the stream goes.
    pub transport: Transport,
    /// The header before each frame.
    pub header: HeaderMode,
    /// The send buffer of each TCP consumer's socket (`--connect`'s too).
    pub send_buffer: SendBuffer,
    /// Compress every frame (`--compress`; needs the glstream header, which names the codec).
    pub compress: Option<Compress>,
}

impl<F: Frame> OutputConfig<F> for SocketConfig {
    fn carries_frame_index(&self) -> bool {
        self.header == HeaderMode::Glstream
    }

    fn compresses(&self) -> bool {
        self.compress.is_some()
    }

    fn bind(&self) -> Result<Box<dyn Output<F>>, BindError> {
        if matches!(self.transport, Transport::Tcp(_) | Transport::Connect(_)) {
            log::info!(
                "TCP consumers get a send buffer of {} (--send-buffer)",
                self.send_buffer
            );
        }
        let mut output = bind(&self.transport, self.header, self.send_buffer)?;
        output.compress = self.compress;
        Ok(Box::new(output))
    }
}

/// Binds `transport` for frames with `header`: the listener for TCP and Unix sockets, a handle
/// on stdout. TCP consumers' sockets get `send_buffer`.
pub fn bind(
    transport: &Transport,
    header: HeaderMode,
    send_buffer: SendBuffer,
) -> Result<SocketOutput, SocketError> {
    let bound = match transport {
        Transport::Tcp(addr) => Bound::Tcp(bind_tcp(*addr)?),
        Transport::Unix(path) => {
            let (listener, owned) = bind_unix(path)?;
            Bound::Unix(listener, owned)
        }
        Transport::Connect(addr) => Bound::Connect(addr.clone()),
        Transport::Stdout => {
            // Writing through a duplicate of fd 1 skips Stdout's line buffer, which would copy
            // the payload. Then fd 1 itself becomes a copy of stderr: once stdout carries frames
            // nothing else may reach it, and a line printed there by anyone (the outputs'
            // "listening on", a library's message) would corrupt the stream.
            let stdout = io::stdout();
            let mut stdout = stdout.lock();
            stdout.flush().map_err(SocketError::Stdout)?;
            let fd = stdout
                .as_fd()
                .try_clone_to_owned()
                .map_err(SocketError::Stdout)?;
            rustix::stdio::dup2_stdout(io::stderr().as_fd())
                .map_err(|e| SocketError::Stdout(e.into()))?;
            Bound::Stdout(File::from(fd))
        }
    };
    Ok(SocketOutput {
        bound,
        header,
        send_buffer,
        compress: None,
    })
}

impl SocketOutput {
    /// The local address of a TCP listener (the port, when 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.bound {
            Bound::Tcp(listener) => listener.local_addr().ok(),
            _ => None,
        }
    }

    /// The path of a Unix listener.
    pub fn unix_path(&self) -> Option<&Path> {
        match &self.bound {
            Bound::Unix(_, owned) => Some(&owned.path),
            _ => None,
        }
    }
}

/// A listening TCP socket with `SO_REUSEADDR` (a restarted server can rebind at once, but never
/// while another process listens on the port) and a backlog of 128, non-blocking so the accept
/// loop can notice the end of the stream.
fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, SocketError> {
    let bind_error = |source| SocketError::Bind {
        addr: addr.to_string(),
        source,
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(bind_error)?;
    socket.set_reuse_address(true).map_err(bind_error)?;
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.listen(128).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    Ok(socket.into())
}

/// A socket file this process created: removed when dropped, but only if the path still is that
/// very file (same device and inode), never one someone put there since. ZeroMQ's `ipc://`
/// endpoints use it too.
pub(crate) struct OwnedPath {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl OwnedPath {
    /// Records the file now at `path`, which this process has just created, as its own.
    pub(crate) fn record(path: &Path) -> io::Result<OwnedPath> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(OwnedPath {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for OwnedPath {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    log::warn!("cannot remove {}: {e}", self.path.display());
                }
            }
            Ok(_) => log::info!(
                "{} is no longer the socket this server made; leaving it",
                self.path.display()
            ),
            Err(_) => {}
        }
    }
}

/// Binds a Unix socket, replacing a stale socket file (nobody accepts on it) but never a live
/// one, and never a file that is not a socket.
fn bind_unix(path: &Path) -> Result<(UnixListener, OwnedPath), SocketError> {
    let bind_error = |source| SocketError::Bind {
        addr: path.display().to_string(),
        source,
    };
    let listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let meta = std::fs::symlink_metadata(path).map_err(bind_error)?;
            if !meta.file_type().is_socket() {
                return Err(SocketError::NotASocket(path.to_path_buf()));
            }
            match UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::UnixInUse(path.to_path_buf())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    log::info!("replacing stale socket {}", path.display());
                    std::fs::remove_file(path).map_err(bind_error)?;
                    UnixListener::bind(path).map_err(bind_error)?
                }
                Err(e) => return Err(bind_error(e)),
            }
        }
        Err(e) => return Err(bind_error(e)),
    };
    let owned = OwnedPath::record(path).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok((listener, owned))
}

impl<F: Frame> Output<F> for SocketOutput {
    fn announcement(&self) -> Option<String> {
        match &self.bound {
            Bound::Tcp(listener) => listener
                .local_addr()
                .ok()
                .map(|addr| format!("listening on {addr}")),
            Bound::Unix(_, owned) => Some(format!("listening on unix:{}", owned.path.display())),
            Bound::Connect(addr) => Some(format!("connecting to {addr}")),
            Bound::Stdout(_) => None,
        }
    }

    fn policy(&self, chosen: Option<Policy>) -> Policy {
        // A recording keeps every frame unless the user says otherwise.
        let default = match self.bound {
            Bound::Stdout(_) => Policy::Lossless,
            _ => Policy::Latest,
        };
        chosen.unwrap_or(default)
    }

    fn start<'scope, 'env>(
        self: Box<Self>,
        scope: &'scope Scope<'scope, 'env>,
        feed: &'env Feed<F>,
        policy: Policy,
    ) -> Result<(), OutputError> {
        let header = self.header;
        let send_buffer = self.send_buffer;
        // Compressed frames come from the feed's encode stage, made now: a codec that cannot
        // carry the format fails here, before any frame.
        let encoder = match self.compress {
            Some(compress) => Some(feed.encoder(scope, Target::Strips(compress), policy)?),
            None => None,
        };
        let framing = move || Framing::new(header, encoder.as_ref(), feed);
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send + 'scope>| {
            thread::Builder::new()
                .name(name.into())
                .spawn_scoped(scope, body)
                .map(drop)
                .map_err(|source| OutputError::Thread {
                    what: name.into(),
                    source,
                })
        };
        match self.bound {
            Bound::Tcp(listener) => spawn(
                "accept",
                Box::new(move || {
                    accept_loop(
                        scope,
                        feed,
                        framing,
                        policy,
                        "tcp",
                        listener.as_fd(),
                        || {
                            let (stream, peer) = listener.accept()?;
                            Ok((Conn::Tcp(stream, send_buffer), format!("client {peer}")))
                        },
                    )
                }),
            ),
            Bound::Unix(listener, owned) => spawn(
                "accept",
                Box::new(move || {
                    let mut n = 0u64;
                    accept_loop(
                        scope,
                        feed,
                        framing,
                        policy,
                        "unix",
                        listener.as_fd(),
                        || {
                            let (stream, _) = listener.accept()?;
                            n += 1;
                            Ok((Conn::Unix(stream), format!("client unix#{n}")))
                        },
                    );
                    // The socket file goes once nobody can connect any more.
                    drop(listener);
                    drop(owned);
                }),
            ),
            Bound::Connect(addr) => spawn(
                "connect",
                Box::new(move || connect_loop(feed, framing, policy, send_buffer, &addr)),
            ),
            Bound::Stdout(file) => {
                // Registered before any frame is rendered, so stdout gets frame 0 first.
                let framing = framing();
                let id = feed.register("stdout", policy);
                spawn(
                    "stdout",
                    Box::new(move || serve_stdout(feed, id, framing, file)),
                )
            }
        }
    }
}

/// Waits until a client knocks on `listener` or the stream finishes (`finished` turns readable);
/// without that descriptor, for 100 ms at most, after which the caller looks at the hub again.
fn wait_for_client(listener: BorrowedFd<'_>, finished: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let mut fds = [
        PollFd::from_borrowed_fd(listener, PollFlags::IN),
        PollFd::from_borrowed_fd(finished.unwrap_or(listener), PollFlags::IN),
    ];
    let result = match finished {
        Some(_) => poll(&mut fds, None),
        None => poll(
            &mut fds[..1],
            Some(&Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            }),
        ),
    };
    match result {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn accept_loop<'scope, 'env, F: Frame>(
    scope: &'scope Scope<'scope, 'env>,
    feed: &'env Feed<F>,
    framing: impl Fn() -> Framing<'env>,
    policy: Policy,
    output: &str,
    listener: BorrowedFd<'_>,
    mut accept: impl FnMut() -> io::Result<(Conn, String)>,
) {
    while !feed.hub.is_finished() {
        let (mut conn, name) = match accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = wait_for_client(listener, feed.hub.finished_fd()) {
                    log::warn!("waiting for clients failed: {e}");
                    feed.hub.wait_finished(Duration::from_millis(100));
                }
                continue;
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning (the listener stays up); the
                // end of the stream ends the backoff.
                log::warn!("accept failed: {e}");
                feed.hub.wait_finished(Duration::from_millis(50));
                continue;
            }
        };
        let connected = feed.hub.client_count();
        if connected >= feed.max_clients {
            log::info!(
                "refusing {name}: {connected} connected already (--max-clients {})",
                feed.max_clients
            );
            feed.stats
                .outputs
                .output(output)
                .refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        if let Err(e) = conn.configure() {
            log::info!("{name}: cannot configure its socket, dropping it: {e}");
            continue;
        }
        let framing = framing();
        let id = feed.register(output, policy);
        // Logged at info once it has taken a frame (serve_sink): a second server probing
        // whether this one is alive connects and leaves at once, and is not a client.
        log::debug!("{name} connected");
        let spawned = thread::Builder::new()
            .name(name.clone())
            .spawn_scoped(scope, move || {
                serve_sink(feed, id, Writer::new(conn, framing), &name);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a writer thread, dropping the client: {e}");
            feed.deregister(id);
        }
    }
}

/// Connects to a listening consumer, serves it until it goes away, and tries again with
/// exponential backoff (100 ms doubling to 5 s) until the stream finishes. The backoff starts
/// over only after a connection that took frames for at least a second, so a consumer that
/// accepts and closes at once is not hammered.
fn connect_loop<'env, F: Frame>(
    feed: &'env Feed<F>,
    framing: impl Fn() -> Framing<'env>,
    policy: Policy,
    send_buffer: SendBuffer,
    addr: &str,
) {
    const FIRST: Duration = Duration::from_millis(100);
    const LONGEST: Duration = Duration::from_secs(5);
    const STABLE: Duration = Duration::from_secs(1);
    let mut backoff = FIRST;
    let mut reported = false;
    let name = format!("consumer {addr}");
    while !feed.hub.is_finished() {
        match connect(addr) {
            Ok(stream) => {
                let mut conn = Conn::Tcp(stream, send_buffer);
                if let Err(e) = conn.configure() {
                    log::info!("{name}: cannot configure the socket: {e}");
                } else {
                    reported = false;
                    let framing = framing();
                    let id = feed.register("connect", policy);
                    log::info!("connected to {addr}");
                    let connected = Instant::now();
                    let departure = serve_sink(feed, id, Writer::new(conn, framing), &name);
                    // A frame written is not a frame delivered: one that accepts and closes at
                    // once takes the first write into its kernel's buffer and resets. Only a
                    // connection that took frames for a while earns a fresh start.
                    if departure.frames > 0 && connected.elapsed() >= STABLE {
                        backoff = FIRST;
                    }
                }
            }
            Err(e) if !reported => {
                log::info!("cannot connect to {addr} ({e}); retrying with backoff");
                reported = true;
            }
            Err(e) => log::debug!("cannot connect to {addr}: {e}; next try in {backoff:?}"),
        }
        // On the hub, so that the end of the stream ends the backoff at once.
        feed.hub.wait_finished(backoff);
        backoff = (backoff * 2).min(LONGEST);
    }
}

/// One connection attempt to each address `addr` resolves to, 2 s each.
fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
    for resolved in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&resolved, Duration::from_secs(2)) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The stdout writer: one consumer, the whole stream. When it is gone the stream ends, and if it
/// did not get every frame the run fails: a recording that could not be written is an error.
fn serve_stdout<F: Frame>(feed: &Feed<F>, id: ClientId, framing: Framing<'_>, file: File) {
    let mut conn = Conn::Pipe(Pipe::new(file));
    if let Err(e) = conn.configure() {
        feed.deregister(id);
        feed.fail(format!("cannot stream to standard output: {e}"));
        return;
    }
    let departure = serve_sink(feed, id, Writer::new(conn, framing), "standard output");
    if let Some(e) = departure.failure {
        feed.fail(format!(
            "standard output failed after {} frames: {e}",
            departure.frames
        ));
    }
    feed.end();
}

/// Standard output, made non-blocking when it is a pipe or a socket (so a stalled reader can be
/// waited for with a deadline) and put back as it was afterwards. A regular file or a terminal
/// stays blocking: writes to them do not stall.
struct Pipe {
    file: File,
    restore: Option<OFlags>,
}

impl Pipe {
    fn new(file: File) -> Self {
        Self {
            file,
            restore: None,
        }
    }

    fn configure(&mut self) -> io::Result<()> {
        let kind = self.file.metadata()?.file_type();
        if kind.is_fifo() || kind.is_socket() {
            let flags = rustix::fs::fcntl_getfl(&self.file)?;
            rustix::fs::fcntl_setfl(&self.file, flags | OFlags::NONBLOCK)?;
            self.restore = Some(flags);
        }
        Ok(())
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if let Some(flags) = self.restore.take() {
            let _ = rustix::fs::fcntl_setfl(&self.file, flags);
        }
    }
}

/// One consumer's byte channel.
enum Conn {
    Tcp(TcpStream, SendBuffer),
    Unix(UnixStream),
    Pipe(Pipe),
}

impl Conn {
    fn configure(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s, send_buffer) => {
                s.set_nodelay(true)?;
                if let Some(bytes) = send_buffer.for_peer(s.peer_addr()?.ip()) {
                    socket2::SockRef::from(&*s).set_send_buffer_size(bytes)?;
                }
                s.set_nonblocking(true)
            }
            Conn::Unix(s) => s.set_nonblocking(true),
            Conn::Pipe(p) => p.configure(),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Tcp(s, _) => s.as_fd(),
            Conn::Unix(s) => s.as_fd(),
            Conn::Pipe(p) => p.file.as_fd(),
        }
    }

    /// Writes through a shared reference (std implements `Write` for `&TcpStream` and the
    /// like), so a wait on the same descriptor can borrow it meanwhile.
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s, _) => (&*s).write_vectored(bufs),
            Conn::Unix(s) => (&*s).write_vectored(bufs),
            Conn::Pipe(p) => (&p.file).write_vectored(bufs),
        }
    }

    /// Shuts the write side, then makes sure closing will not reset the connection while frames
    /// are still queued for the consumer: Linux sends a reset instead of a FIN when a socket is
    /// closed with unread input, and the reset throws the queued frames away. A consumer that
    /// never sent anything is closed at once; one that did has its bytes read and discarded
    /// until it closes its side (it has read everything), or until the deadline.
    fn linger(&mut self, deadline: &Deadline<'_>) {
        let shut = match self {
            Conn::Tcp(s, _) => s.shutdown(Shutdown::Write),
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
            Conn::Pipe(_) => return,
        };
        if shut.is_err() {
            return;
        }
        let mut scratch = [0u8; 4096];
        let mut sent_input = false;
        loop {
            let read = match self {
                Conn::Tcp(s, _) => s.read(&mut scratch),
                Conn::Unix(s) => s.read(&mut scratch),
                Conn::Pipe(_) => return,
            };
            match read {
                Ok(0) => return,
                Ok(_) => sent_input = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !sent_input => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if deadline.poll(self.fd(), PollFlags::IN, 0, 0, 0).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// A [`Sink`] over a [`Conn`]: the chosen header, then the payload.
struct Writer<'env> {
    conn: Conn,
    framing: Framing<'env>,
}

impl<'env> Writer<'env> {
    fn new(conn: Conn, framing: Framing<'env>) -> Self {
        Self { conn, framing }
    }
}

impl Sink for Writer<'_> {
    fn send<F: Frame>(
        &mut self,
        frame: &F,
        shape: &FrameShape,
        deadline: &Deadline<'_>,
    ) -> Result<u64, SendError> {
        let mut held = Held::default();
        let (header, payload) = self.framing.parts(frame, shape, &mut held)?;
        let conn = &self.conn;
        write_frame(
            |bufs| conn.write_vectored(bufs),
            header,
            payload,
            frame.frame_index(),
            deadline,
            // The loop above looks at the deadline and the abort before every write, with the
            // bytes sent so far; this only waits (on the socket and the abort together).
            |_| {
                let _ = deadline.poll(conn.fd(), PollFlags::OUT, 0, 0, 0);
                Ok(true)
            },
        )
    }

    fn close(&mut self, clean: bool, deadline: &Deadline<'_>) {
        if clean {
            self.conn.linger(deadline);
        }
    }
}

/// Writes header then payload with vectored writes until both are out, waiting for the consumer
/// with `wait_writable` whenever it takes nothing, and giving up at the deadline; returns the
/// bytes written.
fn write_frame(
    mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    header: &[u8],
    payload: &[u8],
    frame_index: u64,
    deadline: &Deadline<'_>,
    mut wait_writable: impl FnMut(Duration) -> io::Result<bool>,
) -> Result<u64, SendError> {
    let mut buffers = [IoSlice::new(header), IoSlice::new(payload)];
    let mut remaining = &mut buffers[..];
    // An empty header (raw mode) would make the first writev report 0 bytes for it; skip it.
    IoSlice::advance_slices(&mut remaining, 0);
    let total = (header.len() + payload.len()) as u64;
    let mut sent = 0u64;
    while !remaining.is_empty() {
        let wait = deadline.next_wait(frame_index, sent, total)?;
        match write(remaining) {
            Ok(0) => return Err(SendError::HungUp(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                sent += n as u64;
                IoSlice::advance_slices(&mut remaining, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_writable(wait).map_err(SendError::from_io)?;
            }
            Err(e) => return Err(SendError::from_io(e)),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #[test]
    fn auto_sizes_only_loopback_peers_and_remote_ones_keep_autotuning() {
        use super::SendBuffer;
        let auto = SendBuffer::Loopback(512 << 10);
        assert_eq!(auto.for_peer([127, 0, 0, 1].into()), Some(512 << 10));
        assert_eq!(
            auto.for_peer(std::net::Ipv6Addr::LOCALHOST.into()),
            Some(512 << 10)
        );
        assert_eq!(auto.for_peer([192, 168, 1, 20].into()), None);
        assert_eq!(auto.for_peer([10, 0, 0, 2].into()), None);
        assert_eq!(
            SendBuffer::Bytes(4096).for_peer([10, 0, 0, 2].into()),
            Some(4096)
        );
        assert_eq!(SendBuffer::System.for_peer([127, 0, 0, 1].into()), None);
    }

    use super::*;

    #[test]
    fn a_tcp_consumer_socket_gets_the_send_buffer_asked_for() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut conn = Conn::Tcp(stream, SendBuffer::Bytes(96 << 10));
        conn.configure().unwrap();
        let Conn::Tcp(stream, _) = &conn else {
            unreachable!()
        };
        // Linux doubles the request for its own bookkeeping.
        let kept = socket2::SockRef::from(stream).send_buffer_size().unwrap();
        assert_eq!(kept, 2 * (96 << 10));
        assert!(stream.nodelay().unwrap());
    }

    /// A sink that accepts at most 5 bytes per call, to exercise partial vectored writes.
    fn trickle(out: &mut Vec<u8>) -> impl FnMut(&[IoSlice<'_>]) -> io::Result<usize> + '_ {
        move |bufs| {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            let n = first.len().min(5);
            out.extend_from_slice(&first[..n]);
            Ok(n)
        }
    }

    fn deadline(aborted: &dyn Fn() -> bool, after: Duration) -> Deadline<'_> {
        let now = Instant::now();
        Deadline {
            at: now + after,
            started: now,
            aborted,
            abort_fd: None,
        }
    }

    #[test]
    fn partial_vectored_writes_send_everything_in_order() {
        let never = || false;
        let soon = deadline(&never, Duration::from_secs(60));
        let payload: Vec<u8> = (0..23).collect();
        let mut out = Vec::new();
        let sent = write_frame(trickle(&mut out), b"HEADER", &payload, 0, &soon, |_| {
            Ok(true)
        });
        assert_eq!(sent.unwrap(), 29);
        assert_eq!(&out[..6], b"HEADER");
        assert_eq!(&out[6..], &payload[..]);
        let mut raw = Vec::new();
        write_frame(trickle(&mut raw), b"", &payload, 0, &soon, |_| Ok(true)).unwrap();
        assert_eq!(raw, payload);
    }

    #[test]
    fn a_consumer_that_trickles_is_cut_off_at_the_deadline_not_per_write() {
        let never = || false;
        let short = deadline(&never, Duration::from_millis(200));
        // Each write makes progress, but slowly: a per-syscall timeout would never fire.
        let slow = |bufs: &[IoSlice<'_>]| {
            thread::sleep(Duration::from_millis(20));
            Ok(bufs.iter().map(|b| b.len()).sum::<usize>().min(1))
        };
        let started = Instant::now();
        let result = write_frame(slow, b"", &[0u8; 1000], 7, &short, |_| Ok(true));
        assert!(matches!(
            result,
            Err(SendError::TimedOut { frame_index: 7, total: 1000, sent, .. }) if sent < 1000
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn an_abort_ends_a_blocked_write() {
        let aborted = || true;
        let cut = deadline(&aborted, Duration::from_secs(60));
        let blocked = |_: &[IoSlice<'_>]| Err(io::ErrorKind::WouldBlock.into());
        let result = write_frame(blocked, b"H", b"payload", 0, &cut, |_| Ok(false));
        assert!(matches!(
            result,
            Err(SendError::Aborted { sent: 0, total: 8 })
        ));
    }

    #[test]
    fn unix_bind_replaces_stale_sockets_only_and_removes_only_its_own() {
        let dir = std::env::temp_dir().join(format!("glstream-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let live = bind_unix(&path).unwrap();
        assert!(matches!(bind_unix(&path), Err(SocketError::UnixInUse(_))));
        // A listener that dies without cleaning up leaves a stale file, which is replaced. The
        // owner guard is forgotten on purpose: that is what a crashed server leaves behind.
        std::mem::forget(live.1);
        drop(live.0);
        assert!(path.exists());
        let again = bind_unix(&path).unwrap();
        // Someone replaces the socket file with their own: ours must not delete theirs.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"theirs").unwrap();
        drop(again);
        assert_eq!(std::fs::read(&path).unwrap(), b"theirs");
        let plain = dir.join("plain");
        std::fs::write(&plain, b"keep me").unwrap();
        assert!(matches!(bind_unix(&plain), Err(SocketError::NotASocket(_))));
        assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
