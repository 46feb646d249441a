//! `/stream.mjpg`: each viewer's thread takes frames from the hub at `--preview-fps`, encodes
//! a JPEG once for every viewer that gets that frame, and hands the part to its connection.

use super::*;

/// The body of `/stream.mjpg`: the parts its viewer's thread hands over, as they come. When the
/// thread leaves (the stream is over, or the viewer was dropped), the body ends.
pub(super) struct MjpegBody {
    pub(super) receiver: mpsc::Receiver<Bytes>,
    /// Told when a part is taken, or the connection goes away.
    pub(super) handoff: Arc<Handoff>,
}

impl Body for MjpegBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        let polled = self.receiver.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &polled {
            // The slot is free again: a viewer thread waiting to hand over a part may go on.
            self.handoff.wake();
        }
        polled.map(|part| part.map(|part| Ok(BodyFrame::data(part))))
    }
}

impl Drop for MjpegBody {
    fn drop(&mut self) {
        // Closed first, so that the woken viewer thread sees the connection gone.
        self.receiver.close();
        self.handoff.wake();
    }
}

/// What a viewer thread waits on while its connection still writes the part it was handed:
/// the connection taking it or going away (told by [`MjpegBody`]), or the end of the stream
/// (told by [`Handoffs::end`]). An event, so that a viewer whose connection is slower than its
/// preview rate does not look again and again.
pub(super) struct Handoff {
    /// Whether the stream has ended.
    ended: Mutex<bool>,
    changed: Condvar,
}

impl Handoff {
    /// Wakes the viewer thread, which looks at what it waits for.
    fn wake(&self) {
        let _ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        self.changed.notify_one();
    }

    /// Waits until `ready` says so, the stream has ended, or `until` has come. `ready` is looked
    /// at under the lock the wakers take, so no wake-up is missed.
    fn wait(&self, until: Instant, ready: impl Fn() -> bool) {
        let mut ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        while !*ended && !ready() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            ended = self
                .changed
                .wait_timeout(ended, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Every viewer's [`Handoff`], so that the end of the stream reaches the viewers waiting.
#[derive(Default)]
pub(super) struct Handoffs {
    /// Whether the stream has ended, and the hand-offs of the viewers that may still wait.
    viewers: Mutex<(bool, Vec<Weak<Handoff>>)>,
}

impl Handoffs {
    /// A new viewer's hand-off (already ended if the stream is).
    pub(super) fn add(&self) -> Arc<Handoff> {
        let mut viewers = self.viewers.lock().unwrap_or_else(PoisonError::into_inner);
        let handoff = Arc::new(Handoff {
            ended: Mutex::new(viewers.0),
            changed: Condvar::new(),
        });
        viewers.1.retain(|weak| weak.strong_count() > 0);
        viewers.1.push(Arc::downgrade(&handoff));
        handoff
    }

    /// The stream has ended: wakes every viewer waiting for its connection.
    pub(super) fn end(&self) {
        let mut viewers = self.viewers.lock().unwrap_or_else(PoisonError::into_inner);
        viewers.0 = true;
        for handoff in viewers.1.drain(..).filter_map(|weak| weak.upgrade()) {
            *handoff.ended.lock().unwrap_or_else(PoisonError::into_inner) = true;
            handoff.changed.notify_one();
        }
    }
}

/// One MJPEG viewer, fed by [`serve_sink`] on its own thread.
pub(super) struct ViewerSink<'a> {
    /// To the connection; room for one part.
    pub(super) parts: mpsc::Sender<Bytes>,
    /// The frames' JPEGs, from the encode stage.
    pub(super) jpeg: Encoding<'a>,
    /// Told when the connection takes the part, goes away, or the stream ends.
    pub(super) handoff: Arc<Handoff>,
    pub(super) shared: Arc<Shared>,
    pub(super) send_timeout: Duration,
    /// When the last part was handed over.
    pub(super) last_sent: Option<Instant>,
    /// When the part the connection still holds was handed over.
    pub(super) queued_at: Option<Instant>,
    /// When a frame the viewer was due was last missed because the connection was still
    /// writing the part before (counted once per preview interval).
    pub(super) missed_at: Option<Instant>,
}

impl Sink for ViewerSink<'_> {
    /// After the preview interval; while the connection still writes the part before, first
    /// until it has taken it (or the send timeout since it was handed over has run out: then
    /// `send` gives up on the viewer).
    fn next_due(&mut self) -> Option<Instant> {
        let interval = self.shared.config.preview_interval;
        let paced = self.last_sent.map(|at| at + interval);
        if self.parts.capacity() == 0 && !self.parts.is_closed() {
            let now = Instant::now();
            let give_up = self.queued_at.unwrap_or(now) + self.send_timeout;
            let parts = &self.parts;
            self.handoff
                .wait(give_up, || parts.capacity() > 0 || parts.is_closed());
            // The preview slots that came while the connection was still writing were missed:
            // what a viewer calls drops.
            let now = Instant::now();
            if let Some(paced) = paced
                && now > paced
                && self.parts.capacity() > 0
            {
                let late = (now - paced).as_nanos();
                let slots = late.div_ceil(interval.as_nanos().max(1));
                self.shared
                    .counters
                    .missed
                    .fetch_add(slots as u64, Ordering::Relaxed);
                self.missed_at = Some(now);
            }
        }
        paced
    }

    fn send<F: Frame>(
        &mut self,
        frame: &F,
        _shape: &FrameShape,
        deadline: &Deadline<'_>,
    ) -> Result<u64, SendError> {
        if self.parts.is_closed() {
            return Err(SendError::HungUp(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the viewer closed the connection",
            )));
        }
        if self.parts.capacity() == 0 {
            // The connection has not written the last part yet: skip this frame, and give up
            // on a viewer that has taken nothing for the send timeout.
            let now = deadline.started;
            let queued_at = *self.queued_at.get_or_insert(now);
            let waited = now.saturating_duration_since(queued_at);
            if waited >= self.send_timeout {
                return Err(SendError::TimedOut {
                    frame_index: frame.frame_index(),
                    sent: 0,
                    total: 0,
                    elapsed: waited,
                });
            }
            // Reached only when `next_due` stopped waiting without the part taken (the stream
            // ended): a frame the viewer was due is lost, which is what a viewer calls a drop.
            // Counted once per preview interval, however many frames came meanwhile.
            let interval = self.shared.config.preview_interval;
            if self
                .missed_at
                .is_none_or(|at| now.saturating_duration_since(at) >= interval)
            {
                self.missed_at = Some(now);
                self.shared.counters.missed.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(0);
        }
        let Some(part) = self.part(frame) else {
            return Ok(0);
        };
        let bytes = part.len() as u64;
        match self.parts.try_send(part) {
            Ok(()) => {
                let now = Instant::now();
                self.last_sent = Some(now);
                self.queued_at = Some(now);
                self.missed_at = None;
                Ok(bytes)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(0),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::HungUp(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the viewer closed the connection",
            ))),
        }
    }

    fn close(&mut self, _clean: bool, _deadline: &Deadline<'_>) {
        // Dropping the sender ends the body once the connection has written what it holds.
    }
}

impl ViewerSink<'_> {
    /// The MJPEG part of `frame`, around the JPEG the encode stage made of it once for every
    /// viewer (or `None` when it could not be encoded, logged there).
    pub(super) fn part<F: Frame>(&mut self, frame: &F) -> Option<Bytes> {
        let jpeg = self.jpeg.get(frame).ok()?;
        Some(mjpeg_part(&jpeg.payload, frame.frame_index()))
    }
}

/// One part of the multipart stream: boundary, headers, the JPEG, and the line end that closes
/// it.
pub fn mjpeg_part(jpeg: &[u8], frame_index: u64) -> Bytes {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame-Index: \
         {frame_index}\r\n\r\n",
        jpeg.len()
    );
    let mut part = Vec::with_capacity(head.len() + jpeg.len() + 2);
    part.extend_from_slice(head.as_bytes());
    part.extend_from_slice(jpeg);
    part.extend_from_slice(b"\r\n");
    Bytes::from(part)
}
