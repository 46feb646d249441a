//! The TCP listener and one writer thread per client.
//!
//! The listener is made with socket2 so that the backlog and `SO_REUSEADDR` are explicit (a
//! restarted server can rebind at once, but never while another process listens on the port).
//! Each accepted client gets a writer thread that loops: take a frame from the [`Hub`], write
//! header and payload with one vectored write straight from the mapped bytes, report it sent.
//! A client that hangs up (reset, broken pipe, a write that times out) costs only its own
//! thread: it is logged at info and deregistered. SIGPIPE cannot kill the process: the Rust
//! runtime sets it to ignored before `main`, so a dead peer is an `EPIPE` error like any other.

use std::io::{self, IoSlice, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use super::hub::{Frame, Hub, Policy};
use super::protocol::{FrameInfo, HeaderMode, MAX_HEADER_LEN, ProtocolError, encode};

/// Fatal server errors (per-client failures are logged, never returned).
#[derive(Debug, Error)]
pub enum ServerError {
    /// The address could not be bound or listened on (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The frame size cannot be described by the chosen header.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A thread could not be started.
    #[error("cannot start thread: {0}")]
    Thread(io::Error),
}

/// Counters the GL thread reads for its once-a-second stats line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes written to all clients, headers included.
    pub bytes_sent: AtomicU64,
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
    /// A write that makes no progress for this long drops the client.
    pub send_timeout: Duration,
}

/// Binds a listening TCP socket (`SO_REUSEADDR`, backlog 128).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let bind_error = |source| ServerError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(bind_error)?;
    socket.set_reuse_address(true).map_err(bind_error)?;
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.listen(128).map_err(bind_error)?;
    Ok(socket.into())
}

/// A running accept loop; clients are served until the process ends or the hub finishes.
pub struct Server {
    local_addr: SocketAddr,
    _accept: JoinHandle<()>,
}

impl Server {
    /// Starts accepting on `listener`; each client is registered in `hub` and gets a writer.
    pub fn start<F: Frame>(
        listener: TcpListener,
        hub: Arc<Hub<F>>,
        options: ServeOptions,
        stats: Arc<Stats>,
    ) -> Result<Self, ServerError> {
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let mut header = [0u8; MAX_HEADER_LEN];
        let info = FrameInfo {
            width_px: options.width_px,
            height_px: options.height_px,
            payload_len: options.width_px as u64 * options.height_px as u64 * 4,
        };
        let header_len = encode(options.header, &info, &mut header)?;
        let accept = thread::Builder::new()
            .name("accept".into())
            .spawn(move || accept_loop(listener, hub, options, stats, header, header_len))
            .map_err(ServerError::Thread)?;
        Ok(Self {
            local_addr,
            _accept: accept,
        })
    }

    /// The address actually bound (the port is real even when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

fn accept_loop<F: Frame>(
    listener: TcpListener,
    hub: Arc<Hub<F>>,
    options: ServeOptions,
    stats: Arc<Stats>,
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays up.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if let Err(e) = configure(&stream, options.send_timeout) {
            log::info!("client {peer}: cannot configure socket, dropping it: {e}");
            continue;
        }
        let id = hub.register(options.policy);
        log::info!("client {peer} connected ({} connected)", hub.client_count());
        let writer_hub = Arc::clone(&hub);
        let writer_stats = Arc::clone(&stats);
        let spawned = thread::Builder::new()
            .name(format!("client {peer}"))
            .spawn(move || {
                let mut writer = Writer {
                    stream,
                    peer,
                    header,
                    header_len,
                };
                writer.run(&writer_hub, id, &writer_stats);
            });
        if let Err(e) = spawned {
            log::warn!("client {peer}: cannot start its writer, dropping it: {e}");
            hub.deregister(id);
        }
    }
}

fn configure(stream: &TcpStream, send_timeout: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(send_timeout))
}

struct Writer {
    stream: TcpStream,
    peer: SocketAddr,
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
}

impl Writer {
    fn run<F: Frame>(&mut self, hub: &Hub<F>, id: super::hub::ClientId, stats: &Stats) {
        let mut failure = None;
        while let Some(frame) = hub.next_frame(id) {
            let sequence = frame.sequence();
            let result = write_frame(
                &mut self.stream,
                &self.header[..self.header_len],
                frame.bytes(),
            );
            drop(frame);
            match result {
                Ok(written) => {
                    stats
                        .bytes_sent
                        .fetch_add(written as u64, Ordering::Relaxed);
                    hub.sent(id, sequence);
                    log::trace!("client {}: sent frame {sequence}", self.peer);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let totals = hub.deregister(id);
        let remaining = hub.client_count();
        match failure {
            Some(e) => log::info!(
                "client {} dropped after {} frames ({} skipped): {e} ({remaining} connected)",
                self.peer,
                totals.sent,
                totals.skipped
            ),
            None => {
                let _ = self.stream.flush();
                let _ = self.stream.shutdown(std::net::Shutdown::Both);
                log::info!(
                    "client {} done after {} frames ({} skipped)",
                    self.peer,
                    totals.sent,
                    totals.skipped
                );
            }
        }
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
    use super::write_frame;
    use std::io::{self, IoSlice, Write};

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
}
