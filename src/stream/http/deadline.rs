//! The write deadline of a connection's responses: a client that does not read what it asked
//! for is disconnected once `--send-timeout` has passed.

use super::*;

/// The write deadline of one connection's responses: armed when a response is made and again
/// whenever its body hands over data (so a body known up front has `--send-timeout` whole, and
/// each part of `/stream.mjpg` has it anew), cleared once a body has ended and everything was
/// written. A write that cannot go on past it closes the connection ([`DeadlineStream`]).
pub(super) struct WriteDeadline {
    pub(super) timeout: Duration,
    pub(super) state: Mutex<DeadlineState>,
}

#[derive(Default)]
pub(super) struct DeadlineState {
    pub(super) due: Option<tokio::time::Instant>,
    /// The body has ended: the next complete flush ends the response.
    pub(super) body_done: bool,
}

impl WriteDeadline {
    pub(super) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            state: Mutex::new(DeadlineState::default()),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, DeadlineState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A response, or a part of one, is being handed to the connection now.
    pub(super) fn arm(&self) {
        let mut state = self.lock();
        state.due = Some(tokio::time::Instant::now() + self.timeout);
        state.body_done = false;
    }

    /// The body being written has no more data.
    pub(super) fn body_done(&self) {
        self.lock().body_done = true;
    }

    /// Everything handed to the connection was written: if the body had ended, so has the
    /// response, and its deadline.
    pub(super) fn flushed(&self) {
        let mut state = self.lock();
        if state.body_done {
            state.due = None;
            state.body_done = false;
        }
    }

    /// When the write that is waiting must be through. A write with no response behind it
    /// (an error hyper answers itself: 400, 431) gets the timeout from now.
    pub(super) fn due(&self) -> tokio::time::Instant {
        let timeout = self.timeout;
        *self
            .lock()
            .due
            .get_or_insert_with(|| tokio::time::Instant::now() + timeout)
    }
}

/// A connection's socket, whose writes fail once its [`WriteDeadline`] has passed: hyper then
/// closes the connection, and its slot is free. Reads are the socket's own.
pub(super) struct DeadlineStream {
    pub(super) stream: tokio::net::TcpStream,
    pub(super) deadline: Arc<WriteDeadline>,
    /// Wakes the connection at the deadline while a write waits.
    pub(super) timer: Pin<Box<tokio::time::Sleep>>,
    pub(super) peer: SocketAddr,
    pub(super) counters: Arc<OutputCounters>,
}

impl DeadlineStream {
    /// A write cannot go on: waits for the socket (already registered by the write) or the
    /// deadline, whichever comes first, and fails at the deadline.
    pub(super) fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let due = self.deadline.due();
        if self.timer.deadline() != due {
            self.timer.as_mut().reset(due);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        log::info!(
            "http: {}: dropped: it did not read a response within --send-timeout ({:.1?})",
            self.peer,
            self.deadline.timeout
        );
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the response was not read within --send-timeout",
        )))
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending => self.blocked(cx),
            done => done,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.blocked(cx),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes the socket only once its own buffer is empty: everything it was handed
        // is written.
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.deadline.flushed();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => self.blocked(cx),
            failed => failed,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_shutdown(cx) {
            Poll::Pending => self.blocked(cx),
            done => done,
        }
    }
}

/// A response body that keeps its connection's [`WriteDeadline`]: armed at each frame of data
/// it hands over, told when it ends.
pub(super) struct TimedBody {
    pub(super) inner: ResponseBody,
    pub(super) deadline: Arc<WriteDeadline>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(_)) => {
                self.deadline.arm();
                if self.inner.is_end_stream() {
                    self.deadline.body_done();
                }
            }
            Poll::Ready(None) => self.deadline.body_done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.inner.is_end_stream();
        if ended {
            self.deadline.body_done();
        }
        ended
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
