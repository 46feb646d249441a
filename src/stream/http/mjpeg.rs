//! `/stream.mjpg`: each viewer's thread takes frames from the hub at `--preview-fps`, encodes
//! a JPEG once for every viewer that gets that frame, and hands the part to its connection.

use super::*;

/// The body of `/stream.mjpg`: the parts its viewer's thread hands over, as they come. When the
/// thread leaves (the stream is over, or the viewer was dropped), the body ends.
pub(super) struct MjpegBody {
    pub(super) receiver: mpsc::Receiver<Bytes>,
}

impl Body for MjpegBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        self.receiver
            .poll_recv(cx)
            .map(|part| part.map(|part| Ok(BodyFrame::data(part))))
    }
}

/// One MJPEG viewer, fed by [`serve_sink`] on its own thread.
pub(super) struct ViewerSink<'a> {
    /// To the connection; room for one part.
    pub(super) parts: mpsc::Sender<Bytes>,
    /// The frames' JPEGs, from the encode stage.
    pub(super) jpeg: Encoding<'a>,
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

/// How often a viewer whose connection still holds the last part looks again. A poll, but only
/// while a viewer's connection is slower than its preview rate: the part goes through a tokio
/// channel, whose free slot a blocked thread cannot wait for together with the hub's end.
pub(super) const RETRY: Duration = Duration::from_millis(10);

impl Sink for ViewerSink<'_> {
    fn next_due(&mut self) -> Option<Instant> {
        let paced = self
            .last_sent
            .map(|at| at + self.shared.config.preview_interval);
        if self.parts.capacity() == 0 && !self.parts.is_closed() {
            let retry = Instant::now() + RETRY;
            return Some(paced.map_or(retry, |paced| paced.max(retry)));
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
            // This is called only once the viewer is due a frame (see `next_due`): a frame it
            // was due is lost, which is what a viewer calls a drop. Counted once per preview
            // interval, however many frames the renderer published meanwhile.
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
