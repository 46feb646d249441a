//! `--control ENDPOINT`: the control channel's socket and the queue between it and the render
//! loop.
//!
//! A ZeroMQ ROUTER socket (REQ and DEALER clients both work; a REQ client sees it as a REP) is
//! served by one thread: each message is parsed (`crate::control`), a malformed one answered at
//! once, a valid one queued for the render loop with the envelope that routes its answer back.
//! The render loop applies each request to the scene before a frame, tags that frame with the
//! request's id, and answers once the frame has been handed to the outputs; answers travel back
//! to the socket's thread over an inproc pair, so that thread waits on one `zmq_poll` for both
//! clients and answers, never on a timer. Answers go out without waiting: a client that never
//! reads its answers loses them at its high-water mark and costs nothing else.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, Result};

use crate::control::{self, MAX_REQUEST_BYTES, Refused, Request};
use crate::stream::zmq::{Opened, check_endpoint, open};

/// Requests waiting for the render loop beyond this many are refused at once (`busy`).
pub const MAX_QUEUED: usize = 4096;

/// A request waiting for its frame, with the envelope its answer goes back with.
pub struct Pending {
    /// What was asked.
    pub request: Request,
    envelope: Vec<Vec<u8>>,
}

/// The requests the socket's thread has read and the render loop has not taken yet.
#[derive(Default)]
pub struct Queue {
    pending: Mutex<VecDeque<Pending>>,
}

impl Queue {
    /// Takes the oldest request, if any.
    pub fn pop(&self) -> Option<Pending> {
        self.lock().pop_front()
    }

    /// Whether a request is waiting.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The control socket, bound (before GL starts, like every output) but not yet served.
pub struct ControlSocket {
    context: zmq::Context,
    socket: zmq::Socket,
    /// As bound (a `*` port resolved).
    pub bound: String,
    _owned: Vec<crate::stream::socket::OwnedPath>,
}

/// How many inproc pairs this process made (each stream's has its own name).
static PAIRS: AtomicU64 = AtomicU64::new(0);

/// Binds `endpoint` (`tcp://HOST:PORT`, `tcp://HOST:*`, `ipc://PATH`).
pub fn bind(endpoint: &str) -> Result<ControlSocket> {
    check_endpoint("--control", endpoint)?;
    let context = zmq::Context::new();
    let Opened {
        socket,
        mut bound,
        owned,
    } = open(
        &context,
        zmq::ROUTER,
        "ROUTER",
        &[endpoint.to_string()],
        &[],
        // A peer announcing a longer part is dropped by libzmq before it is read.
        MAX_REQUEST_BYTES as i64,
        |socket| {
            // Answers to a client that does not read are dropped at its HWM, never waited for.
            socket.set_sndhwm(1000)?;
            socket.set_sndtimeo(0)
        },
    )
    .with_context(|| format!("--control {endpoint}"))?;
    Ok(ControlSocket {
        context,
        socket,
        bound: bound.remove(0),
        _owned: owned,
    })
}

/// The render loop's end of the channel: the queue it takes requests from, and the pair it
/// sends answers (and, at the end, the stop) through.
pub struct Link {
    queue: Arc<Queue>,
    answers: zmq::Socket,
}

impl Link {
    /// The queue of requests.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Answers `pending` with `answer` (a JSON object).
    pub fn answer(&self, pending: Pending, answer: &str) {
        for part in &pending.envelope {
            let _ = self.answers.send(&part[..], zmq::SNDMORE);
        }
        let _ = self.answers.send(answer.as_bytes(), 0);
    }

    /// Answers `pending`: it was rendered as frame `frame_index`.
    pub fn done(&self, pending: Pending, frame_index: u64) {
        let id = pending.request.id;
        self.answer(pending, &control::answer_ok(id, frame_index));
    }

    /// Refuses `pending` with `error`; nothing of it was applied.
    pub fn refuse(&self, pending: Pending, error: String) {
        let id = Some(pending.request.id);
        self.answer(pending, &control::answer_refused(&Refused { id, error }));
    }

    /// Ends the socket's thread (an empty message on the pair).
    pub fn stop(&self) {
        let _ = self.answers.send(&b""[..], 0);
    }
}

impl ControlSocket {
    /// Splits into the render loop's [`Link`] and the socket's thread body, which calls `wake`
    /// after queueing each request (to wake a render loop waiting for one) and returns once
    /// [`Link::stop`] is called.
    pub fn serve(self, wake: impl Fn() + Send) -> Result<(Link, impl FnOnce() + Send)> {
        let name = format!(
            "inproc://glstream-control-{}",
            PAIRS.fetch_add(1, Ordering::Relaxed)
        );
        let inbox = self.context.socket(zmq::PAIR)?;
        inbox.bind(&name)?;
        let answers = self.context.socket(zmq::PAIR)?;
        answers.set_linger(0)?;
        answers.connect(&name)?;
        let queue = Arc::new(Queue::default());
        let link = Link {
            queue: Arc::clone(&queue),
            answers,
        };
        let ControlSocket {
            context,
            socket,
            bound,
            _owned,
        } = self;
        let body = move || {
            run(&socket, &inbox, &queue, &wake);
            log::debug!("control channel on {bound} closed");
            drop(socket);
            drop(inbox);
            drop(_owned);
            drop(context);
        };
        Ok((link, body))
    }
}

/// The socket's thread: reads requests and forwards answers until the stop.
fn run(socket: &zmq::Socket, inbox: &zmq::Socket, queue: &Queue, wake: &dyn Fn()) {
    loop {
        let mut items = [
            socket.as_poll_item(zmq::POLLIN),
            inbox.as_poll_item(zmq::POLLIN),
        ];
        match zmq::poll(&mut items, -1) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => {
                log::warn!("control channel: cannot poll: {e}");
                return;
            }
        }
        let (requests, answers) = (items[0].is_readable(), items[1].is_readable());
        if answers {
            // Forward every answer that is ready, as one message each.
            while let Ok(parts) = inbox.recv_multipart(zmq::DONTWAIT) {
                if parts.len() == 1 && parts[0].is_empty() {
                    return;
                }
                let last = parts.len() - 1;
                for (i, part) in parts.iter().enumerate() {
                    let flags = if i < last { zmq::SNDMORE } else { 0 } | zmq::DONTWAIT;
                    if let Err(e) = socket.send(&part[..], flags) {
                        log::debug!("control channel: an answer was dropped: {e}");
                        break;
                    }
                }
            }
        }
        if requests {
            while let Ok(mut parts) = socket.recv_multipart(zmq::DONTWAIT) {
                // [identity, (empty delimiter from REQ), body]: the body is the last part,
                // everything before it is the envelope the answer goes back with.
                let Some(body) = parts.pop() else { continue };
                if parts.is_empty() {
                    continue;
                }
                let reply_now = |answer: String| {
                    for part in &parts {
                        let _ = socket.send(&part[..], zmq::SNDMORE | zmq::DONTWAIT);
                    }
                    let _ = socket.send(answer.as_bytes(), zmq::DONTWAIT);
                };
                match control::parse(&body) {
                    Err(refused) => reply_now(control::answer_refused(&refused)),
                    Ok(request) => {
                        let mut pending = queue.lock();
                        if pending.len() >= MAX_QUEUED {
                            drop(pending);
                            reply_now(control::answer_refused(&Refused {
                                id: Some(request.id),
                                error: format!(
                                    "busy: {MAX_QUEUED} requests are waiting; send fewer at once"
                                ),
                            }));
                            continue;
                        }
                        pending.push_back(Pending {
                            request,
                            envelope: parts,
                        });
                        drop(pending);
                        wake();
                    }
                }
            }
        }
    }
}
