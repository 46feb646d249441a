//! The hand-off between the GL thread and the per-client writers.
//!
//! The GL thread [`Hub::publish`]es each finished frame (a read-only view into a mapped PBO);
//! writer threads take clones of it ([`Hub::next_frame`]) and write from it directly, so every
//! client is served from the same mapped bytes. Before the GL thread reuses a buffer it
//! [`Hub::retract_through`]s the frames in it: from then on no writer can start on them, and the
//! GL side waits only for writers already mid-write.
//!
//! Frames are numbered by a sequence that never restarts (the scene's frame index restarts when a
//! client finds the server idle, the sequence does not). The hub keeps an *epoch*: it moves on
//! whenever a client joins an idle server, and a frame rendered in an earlier epoch is refused at
//! publish time, so a client that joins an idle server sees frame 0 of a fresh run first.
//!
//! Policies: a [`Policy::Latest`] writer takes the newest published frame and skips what it
//! missed (its first frame excepted: that is the first published after it joined); a [`Policy::Lossless`] writer takes every frame in order, and frames are not retracted
//! until every lossless writer has taken them, which makes the render loop wait for the slowest.
//!
//! In steady state nothing here allocates: the published queue has a fixed capacity and a frame
//! clone is a reference count. Only connecting a client allocates.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A finished frame as the writers see it.
pub trait Frame: Clone + Send + Sync {
    /// The payload, exactly as it goes on the wire.
    fn bytes(&self) -> &[u8];
    /// The frame's sequence number (monotonic over the process).
    fn sequence(&self) -> u64;
    /// The scene's frame index (restarts at 0 when a client finds the server idle).
    fn frame_index(&self) -> u64;
    /// When the frame was rendered, nanoseconds since the Unix epoch.
    fn timestamp_ns(&self) -> u64;
    /// The control request the frame answers (0: none).
    fn request_id(&self) -> u64 {
        0
    }
    /// Runs `take` on the holder of the loan the frame's bytes are in, when the render loop
    /// read them into memory an output lent ([`super::output::Lending`]), so that output can
    /// take the loan and send it on; returns whether there was one.
    fn with_loan(&self, _take: &mut dyn FnMut(&mut (dyn std::any::Any + Send))) -> bool {
        false
    }
}

/// What a client that cannot keep up gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Skip to the newest frame; never a torn frame, never more than one frame held per client.
    Latest,
    /// Every frame in order; the render loop waits for the slowest client (recording pipelines).
    Lossless,
}

/// Identifies a registered client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientId(u64);

struct Client {
    id: ClientId,
    policy: Policy,
    /// The lowest sequence number this client may still be sent.
    next_sequence: u64,
    /// Whether its writer has taken a first frame.
    started: bool,
    sent: u64,
    skipped: u64,
    /// A helper (the encode stage's run-ahead thread): it takes frames like any client but
    /// never makes the server busy, and is let go when the last other client leaves.
    helper: bool,
}

impl Client {
    /// Whether the next frame published must reach this client before it can be withdrawn:
    /// always for lossless clients, and for a new latest client until its writer has taken its
    /// first frame, so that a client of an idle server sees frame 0 however late its writer
    /// thread gets to run. Only until it is *taken*, not sent: a new client that stalls in its
    /// first write must not pin every frame published after it.
    fn takes_every_frame(&self) -> bool {
        self.policy == Policy::Lossless || !self.started
    }
}

impl<F> State<F> {
    /// Whether a consumer (not a helper) is connected.
    fn has_consumers(&self) -> bool {
        self.clients.iter().any(|c| !c.helper)
    }
}

struct State<F> {
    /// Frames writers may take, oldest first, all of the current epoch.
    published: VecDeque<F>,
    clients: Vec<Client>,
    next_client_id: u64,
    epoch: u64,
    /// Sequence number of the newest frame published in any epoch.
    last_published: Option<u64>,
    /// The scene's frame index of that frame.
    last_published_index: Option<u64>,
    /// No frame will be published any more; writers leave when they have sent what is left.
    finished: bool,
}

/// What a client had when it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTotals {
    /// Frames written to it.
    pub sent: u64,
    /// Frames it skipped because it was behind (latest policy).
    pub skipped: u64,
}

/// A file descriptor that becomes readable, for good, when an event happens (an eventfd never
/// read back), so that a thread blocked in `poll` on a socket can be woken by the stream too.
struct Event(rustix::fd::OwnedFd);

impl Event {
    /// A new event; `None` when the process is out of file descriptors, and then waiters fall
    /// back to waiting in bounded slices.
    fn new() -> Option<Self> {
        use rustix::event::{EventfdFlags, eventfd};
        match eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK) {
            Ok(fd) => Some(Event(fd)),
            Err(e) => {
                log::warn!("cannot create an eventfd ({e}); waits fall back to 50 ms slices");
                None
            }
        }
    }

    /// Makes the descriptor readable (once is enough; more writes only add to the count).
    fn set(&self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }
}

/// Shared state between the GL thread (publisher) and the writer threads.
pub struct Hub<F> {
    state: Mutex<State<F>>,
    /// Signalled when a frame is published, a client is added, or the stream finishes.
    frame_ready: Condvar,
    /// Signalled when a writer finishes a frame or a client comes or goes.
    progress: Condvar,
    /// Set when writers must give up the frame they are on (a shutdown's grace ran out). Shared,
    /// so an output can hand it to a library callback that must be `'static`.
    aborted: Arc<AtomicBool>,
    /// Set by [`Hub::shutdown`] (a signal), as opposed to [`Hub::finish`] (every frame rendered).
    shut_down: AtomicBool,
    /// Readable once the stream is finished: accept loops poll it beside their listener.
    finished_event: Option<Event>,
    /// Readable once writers must give up: writers poll it beside their consumer's socket.
    aborted_event: Option<Event>,
}

impl<F: Frame> Hub<F> {
    /// A hub that holds at most `capacity` published frames (the PBO count suffices: a frame can
    /// only be published while its buffer is mapped).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                published: VecDeque::with_capacity(capacity + 1),
                clients: Vec::new(),
                next_client_id: 0,
                epoch: 0,
                last_published: None,
                last_published_index: None,
                finished: false,
            }),
            frame_ready: Condvar::new(),
            progress: Condvar::new(),
            aborted: Arc::new(AtomicBool::new(false)),
            shut_down: AtomicBool::new(false),
            finished_event: Event::new(),
            aborted_event: Event::new(),
        }
    }

    /// A descriptor that turns readable once the stream is finished ([`Hub::finish`],
    /// [`Hub::shutdown`]); `None` if it could not be made (then poll in bounded slices).
    pub fn finished_fd(&self) -> Option<rustix::fd::BorrowedFd<'_>> {
        use rustix::fd::AsFd;
        self.finished_event.as_ref().map(|event| event.0.as_fd())
    }

    /// A descriptor that turns readable once writers must give up ([`Hub::abort`]); `None` if
    /// it could not be made (then look at [`Hub::is_aborted`] in bounded slices).
    pub fn aborted_fd(&self) -> Option<rustix::fd::BorrowedFd<'_>> {
        use rustix::fd::AsFd;
        self.aborted_event.as_ref().map(|event| event.0.as_fd())
    }

    fn lock(&self) -> MutexGuard<'_, State<F>> {
        // A writer that panicked cannot leave the state half-changed (every change is a single
        // assignment or push), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a client. One that finds the server idle starts a new epoch and will get the new
    /// run's frame 0; one that joins mid-stream gets the next frame published.
    pub fn register(&self, policy: Policy) -> ClientId {
        self.add(policy, false)
    }

    /// Adds a helper client: one that takes frames (with `policy`) for the consumers, such as
    /// the encode stage's run-ahead thread. It neither makes an idle server busy nor keeps a
    /// busy one from going idle, and [`Hub::next_frame`] lets it go (returns `None`) once no
    /// consumer is left.
    pub fn register_helper(&self, policy: Policy) -> ClientId {
        self.add(policy, true)
    }

    fn add(&self, policy: Policy, helper: bool) -> ClientId {
        let mut state = self.lock();
        if !helper && !state.has_consumers() {
            state.epoch += 1;
            state.published.clear();
        }
        let id = ClientId(state.next_client_id);
        state.next_client_id += 1;
        let next_sequence = state.last_published.map_or(0, |s| s + 1);
        state.clients.push(Client {
            id,
            policy,
            next_sequence,
            started: false,
            sent: 0,
            skipped: 0,
            helper,
        });
        drop(state);
        self.progress.notify_all();
        id
    }

    /// Removes a client; when it was the last, drops every published frame so the GL side can
    /// reuse its buffers, and the server goes idle.
    pub fn deregister(&self, id: ClientId) -> ClientTotals {
        let mut state = self.lock();
        let totals = match state.clients.iter().position(|c| c.id == id) {
            Some(i) => {
                let client = state.clients.swap_remove(i);
                ClientTotals {
                    sent: client.sent,
                    skipped: client.skipped,
                }
            }
            None => ClientTotals {
                sent: 0,
                skipped: 0,
            },
        };
        let idle = !state.has_consumers();
        let dropped = if idle {
            std::mem::take(&mut state.published)
        } else {
            VecDeque::new()
        };
        drop(state);
        // Frames are released outside the lock: releasing one can wake the GL thread.
        drop(dropped);
        self.progress.notify_all();
        if idle {
            // Helpers waiting for a frame leave once no consumer is left.
            self.frame_ready.notify_all();
        }
        totals
    }

    /// The current epoch (it moves on when a consumer joins an idle server).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Number of connected clients (helpers not counted).
    pub fn client_count(&self) -> usize {
        self.lock().clients.iter().filter(|c| !c.helper).count()
    }

    /// The scene's frame index of the newest frame published, to whichever client; `None`
    /// before the first.
    pub fn newest_frame_index(&self) -> Option<u64> {
        self.lock().last_published_index
    }

    /// Wakes every thread waiting in the hub, so that each looks again at its `stop` condition:
    /// whoever makes such a condition true (a signal, an output ending the stream) calls it.
    pub fn interrupt(&self) {
        let _state = self.lock();
        self.frame_ready.notify_all();
        self.progress.notify_all();
    }

    /// Blocks while no client is connected, then returns the current epoch. Returns `None` at
    /// once if `stop` says so (checked whenever the hub is woken: by a client, or by
    /// [`Hub::interrupt`]).
    pub fn wait_for_clients(&self, stop: &dyn Fn() -> bool) -> Option<u64> {
        let mut state = self.lock();
        loop {
            if stop() {
                return None;
            }
            if state.has_consumers() {
                return Some(state.epoch);
            }
            state = self
                .progress
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits until `deadline` (pacing the render loop), or less if `stop` says so once the hub
    /// is woken ([`Hub::interrupt`]). Returns whether it stopped early.
    pub fn wait_until(&self, deadline: Instant, stop: &dyn Fn() -> bool) -> bool {
        let mut state = self.lock();
        loop {
            if stop() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .progress
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until the stream is finished ([`Hub::finish`], [`Hub::shutdown`]) or `timeout`
    /// has passed; returns whether it is finished. A sink that paces itself, or a backoff
    /// between connection attempts, waits here, and the end of the stream ends the wait.
    ///
    /// On the finished descriptor when there is one, which turns readable only at the end: a
    /// frame published does not wake the waiter, as the condition variable (notified for every
    /// frame) would, thousands of times a second for a paced preview or an idle output.
    pub fn wait_finished(&self, timeout: Duration) -> bool {
        let on_condvar = |timeout| {
            let state = self.lock();
            self.frame_ready
                .wait_timeout_while(state, timeout, |s| !s.finished)
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .finished
        };
        let Some(event) = &self.finished_event else {
            return on_condvar(timeout);
        };
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_finished() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let left = Timespec {
                tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: left.subsec_nanos().into(),
            };
            let mut fds = [PollFd::new(&event.0, PollFlags::IN)];
            match poll(&mut fds, Some(&left)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                // Not for an eventfd of ours; should it happen, the condvar still works.
                Err(_) => return on_condvar(deadline.saturating_duration_since(Instant::now())),
            }
        }
    }

    /// Offers a frame rendered in `epoch` to the writers. A frame from an earlier epoch is
    /// dropped (returns false): nobody connected now asked for it. Older frames that no client
    /// can want any more (latest clients only take the newest; lossless clients take each one
    /// once) are released, so the hub holds as few buffers as possible.
    pub fn publish(&self, epoch: u64, frame: F) -> bool {
        let mut state = self.lock();
        // After a shutdown no writer may start another frame: a signal must not be followed by
        // a frame that began after it.
        if state.finished || state.epoch != epoch || !state.has_consumers() {
            drop(state);
            drop(frame);
            return false;
        }
        state.last_published = Some(frame.sequence());
        state.last_published_index = Some(frame.frame_index());
        state.published.push_back(frame);
        drop(state);
        self.frame_ready.notify_all();
        self.release_unwanted();
        true
    }

    /// Releases published frames older than the newest that no lossless client still needs.
    /// Frames are dropped with the lock released: dropping the last lease on a buffer may wake
    /// the GL thread.
    fn release_unwanted(&self) {
        loop {
            let mut state = self.lock();
            let Some(newest) = state.published.back().map(F::sequence) else {
                return;
            };
            let wanted_from = state
                .clients
                .iter()
                .filter(|c| c.takes_every_frame())
                .map(|c| c.next_sequence)
                .min()
                .unwrap_or(newest)
                .min(newest);
            if state
                .published
                .front()
                .is_none_or(|f| f.sequence() >= wanted_from)
            {
                return;
            }
            let released = state.published.pop_front();
            drop(state);
            drop(released);
        }
    }

    /// Withdraws every published frame up to and including `sequence`, first waiting until
    /// every lossless client has taken it (or `stop` says to give up; checked whenever the hub
    /// is woken, [`Hub::interrupt`] included).
    /// Afterwards only writers already mid-write hold it.
    pub fn retract_through(&self, sequence: u64, stop: &dyn Fn() -> bool) {
        let mut state = self.lock();
        loop {
            let published = state.published.iter().any(|f| f.sequence() == sequence);
            let waiting = state
                .clients
                .iter()
                .any(|c| c.takes_every_frame() && c.next_sequence <= sequence);
            if !(published && waiting) || state.finished || stop() {
                break;
            }
            state = self
                .progress
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // Frames are released one at a time with the lock dropped: releasing the last lease on
        // a buffer wakes the GL thread, which should not then wait for this lock.
        while let Some(frame) = state
            .published
            .front()
            .is_some_and(|f| f.sequence() <= sequence)
            .then(|| state.published.pop_front())
            .flatten()
        {
            drop(state);
            drop(frame);
            state = self.lock();
        }
    }

    /// Blocks until there is a frame for this client and returns it, or returns `None` when the
    /// stream has finished and the client has had everything (or it was removed).
    pub fn next_frame(&self, id: ClientId) -> Option<F> {
        let mut state = self.lock();
        loop {
            let state_ref = &mut *state;
            let consumers = state_ref.clients.iter().any(|c| !c.helper);
            let client = state_ref.clients.iter_mut().find(|c| c.id == id)?;
            if client.helper && !consumers {
                return None;
            }
            let next = client.next_sequence;
            let candidate = if client.takes_every_frame() {
                state_ref.published.iter().find(|f| f.sequence() >= next)
            } else {
                state_ref.published.back().filter(|f| f.sequence() >= next)
            };
            if let Some(frame) = candidate {
                client.started = true;
                return Some(frame.clone());
            }
            if state.finished {
                return None;
            }
            state = self
                .frame_ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Records that `sequence` was written to the client.
    pub fn sent(&self, id: ClientId, sequence: u64) {
        let mut state = self.lock();
        if let Some(client) = state.clients.iter_mut().find(|c| c.id == id) {
            // The first frame after joining is not a skip, whatever its sequence number.
            if client.sent > 0 {
                client.skipped += sequence.saturating_sub(client.next_sequence);
            }
            client.sent += 1;
            client.next_sequence = sequence + 1;
        }
        drop(state);
        self.progress.notify_all();
        self.release_unwanted();
    }

    /// Waits until a consumer is connected and `wanted` says so (looked at whenever a client
    /// comes or goes, or the hub is woken), or the stream is finished; returns whether it was
    /// the former. A helper waits here for the consumers it helps.
    pub fn wait_consumers_and(&self, wanted: &dyn Fn() -> bool) -> bool {
        let mut state = self.lock();
        loop {
            if state.finished {
                return false;
            }
            if state.has_consumers() && wanted() {
                return true;
            }
            state = self
                .progress
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Says no more frames will come; writers leave once they have sent what is published.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.frame_ready.notify_all();
        self.progress.notify_all();
        if let Some(event) = &self.finished_event {
            event.set();
        }
    }

    /// Stops the stream now (a signal): no writer starts another frame, but a frame being
    /// written is finished, so no client ever gets a torn frame.
    pub fn shutdown(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
        let mut state = self.lock();
        state.finished = true;
        let withdrawn = std::mem::take(&mut state.published);
        drop(state);
        drop(withdrawn);
        self.frame_ready.notify_all();
        self.progress.notify_all();
        if let Some(event) = &self.finished_event {
            event.set();
        }
    }

    /// Tells writers to give up the frame they are on (the shutdown's grace is over): they check
    /// [`Hub::is_aborted`] while they wait on a consumer, and leave.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        if let Some(event) = &self.aborted_event {
            event.set();
        }
        self.shutdown();
    }

    /// Whether [`Hub::abort`] was called.
    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// The flag [`Hub::abort`] sets, for callbacks that cannot borrow the hub.
    pub fn abort_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.aborted)
    }

    /// Whether [`Hub::shutdown`] was called: the stream is being stopped, not completed. A sink
    /// still waiting to start a frame (a push socket whose peers are all full) can leave at once
    /// instead of after the shutdown's grace.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }

    /// Whether `finish` or `shutdown` was called.
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// After [`Hub::finish`]: blocks until every client has left or `stop` says to give up
    /// (looked at whenever the hub is woken, [`Hub::interrupt`] included). Returns whether
    /// every client left.
    pub fn wait_drained_or(&self, stop: &dyn Fn() -> bool) -> bool {
        let state = self.lock();
        self.progress
            .wait_while(state, |s| !s.clients.is_empty() && !stop())
            .unwrap_or_else(PoisonError::into_inner)
            .clients
            .is_empty()
    }

    /// After [`Hub::finish`] or [`Hub::shutdown`]: blocks until every client has left (each
    /// writer leaves when it has sent its last frame, or when its client fails), or until
    /// `timeout` has passed. Returns whether every client left.
    pub fn wait_drained(&self, timeout: Option<Duration>) -> bool {
        let state = self.lock();
        let busy = |s: &mut State<F>| !s.clients.is_empty();
        match timeout {
            None => {
                let _drained = self
                    .progress
                    .wait_while(state, busy)
                    .unwrap_or_else(PoisonError::into_inner);
                true
            }
            Some(timeout) => {
                let (state, _) = self
                    .progress
                    .wait_timeout_while(state, timeout, busy)
                    .unwrap_or_else(PoisonError::into_inner);
                state.clients.is_empty()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone)]
    struct TestFrame(u64, Arc<Vec<u8>>);

    impl Frame for TestFrame {
        fn bytes(&self) -> &[u8] {
            &self.1
        }
        fn sequence(&self) -> u64 {
            self.0
        }
        fn frame_index(&self) -> u64 {
            self.0
        }
        fn timestamp_ns(&self) -> u64 {
            0
        }
    }

    /// Runs `body` on a thread of its own and fails the test if it has not finished within 10 s:
    /// a hub that stops waking a waiter must fail a test, not hang the suite.
    fn live(body: impl FnOnce() + Send + 'static) {
        let (done, finished) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            body();
            let _ = done.send(());
        });
        match finished.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => handle.join().unwrap(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Err(panic) = handle.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("a hub call blocked for 10 s: a waiter was never woken")
            }
        }
    }

    fn frame(sequence: u64) -> TestFrame {
        TestFrame(sequence, Arc::new(vec![sequence as u8]))
    }

    #[test]
    fn hub_keeps_only_frames_someone_can_still_want() {
        live(|| {
            let hub = Hub::new(4);
            let latest = hub.register(Policy::Latest);
            let epoch = hub.wait_for_clients(&|| false).unwrap();
            hub.publish(epoch, frame(0));
            hub.sent(latest, hub.next_frame(latest).unwrap().sequence());
            let older = frame(1);
            hub.publish(epoch, older.clone());
            hub.publish(epoch, frame(2));
            // Only the newest is held for a latest client that has started: frame 1's only other
            // holder is `older`.
            assert_eq!(Arc::strong_count(&older.1), 1);
            let lossless = hub.register(Policy::Lossless);
            let kept = frame(3);
            hub.publish(epoch, kept.clone());
            hub.publish(epoch, frame(4));
            assert_eq!(
                Arc::strong_count(&kept.1),
                2,
                "a lossless client still needs frame 3"
            );
            hub.sent(lossless, hub.next_frame(lossless).unwrap().sequence());
            assert_eq!(Arc::strong_count(&kept.1), 1);
            hub.deregister(latest);
        });
    }

    #[test]
    fn latest_client_skips_to_newest() {
        live(|| {
            let hub = Hub::new(4);
            let id = hub.register(Policy::Latest);
            let epoch = hub.wait_for_clients(&|| false).unwrap();
            hub.publish(epoch, frame(0));
            hub.sent(id, hub.next_frame(id).unwrap().sequence());
            for s in 1..4 {
                assert!(hub.publish(epoch, frame(s)));
            }
            let f = hub.next_frame(id).unwrap();
            assert_eq!(f.sequence(), 3);
            hub.sent(id, 3);
            hub.finish();
            assert!(hub.next_frame(id).is_none());
            assert_eq!(
                hub.deregister(id),
                ClientTotals {
                    sent: 2,
                    skipped: 2
                }
            );
        });
    }

    #[test]
    fn a_new_latest_client_gets_the_first_frame_published_after_it_joined() {
        live(|| {
            let hub = Hub::new(4);
            let id = hub.register(Policy::Latest);
            let epoch = hub.wait_for_clients(&|| false).unwrap();
            // Its writer is slow to start: three frames are out before it asks.
            for s in 0..3 {
                hub.publish(epoch, frame(s));
            }
            assert_eq!(hub.next_frame(id).unwrap().sequence(), 0);
            hub.sent(id, 0);
            assert_eq!(hub.next_frame(id).unwrap().sequence(), 2);
        });
    }

    #[test]
    fn a_new_client_stuck_in_its_first_write_pins_only_that_frame() {
        live(|| {
            let hub = Hub::new(4);
            let id = hub.register(Policy::Latest);
            let epoch = hub.wait_for_clients(&|| false).unwrap();
            hub.publish(epoch, frame(0));
            // The writer has taken frame 0 and is blocked writing it; it never calls `sent`.
            let first = hub.next_frame(id).unwrap();
            let later: Vec<TestFrame> = (1..20).map(frame).collect();
            for f in &later {
                hub.publish(epoch, f.clone());
            }
            // Only the newest stays published for it; the others are released, and a retract of
            // an old frame does not wait for the stuck client.
            assert!(later[..18].iter().all(|f| Arc::strong_count(&f.1) == 1));
            hub.retract_through(18, &|| false);
            drop(first);
        });
    }

    #[test]
    fn nothing_is_published_after_shutdown() {
        live(|| {
            let hub = Hub::new(4);
            let id = hub.register(Policy::Latest);
            let epoch = hub.wait_for_clients(&|| false).unwrap();
            hub.shutdown();
            assert!(!hub.publish(epoch, frame(0)));
            assert!(hub.next_frame(id).is_none());
        });
    }

    #[test]
    fn lossless_client_gets_every_frame_in_order() {
        live(|| {
            let hub = Hub::new(4);
            let id = hub.register(Policy::Lossless);
            let epoch = hub.wait_for_clients(&|| false).unwrap();
            for s in 0..3 {
                hub.publish(epoch, frame(s));
            }
            for s in 0..3 {
                let f = hub.next_frame(id).unwrap();
                assert_eq!(f.sequence(), s);
                hub.sent(id, s);
            }
        });
    }

    #[test]
    fn frames_of_an_old_epoch_are_refused_after_idle() {
        live(|| {
            let hub = Hub::new(4);
            let a = hub.register(Policy::Latest);
            let old = hub.wait_for_clients(&|| false).unwrap();
            hub.publish(old, frame(0));
            hub.deregister(a);
            let b = hub.register(Policy::Latest);
            let new = hub.wait_for_clients(&|| false).unwrap();
            assert_ne!(old, new);
            assert!(!hub.publish(old, frame(1)));
            assert!(hub.publish(new, frame(2)));
            assert_eq!(hub.next_frame(b).unwrap().sequence(), 2);
        });
    }

    #[test]
    fn retract_waits_for_lossless_clients() {
        live(|| {
            let hub = Arc::new(Hub::new(4));
            let id = hub.register(Policy::Lossless);
            let epoch = hub.wait_for_clients(&|| false).unwrap();
            hub.publish(epoch, frame(7));
            let taken = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writer = {
                let (hub, taken) = (Arc::clone(&hub), Arc::clone(&taken));
                std::thread::spawn(move || {
                    // Late on purpose, so that the retract below usually has to wait; the
                    // assertion holds in either order.
                    std::thread::sleep(Duration::from_millis(50));
                    let f = hub.next_frame(id).unwrap();
                    taken.store(true, std::sync::atomic::Ordering::SeqCst);
                    hub.sent(id, f.sequence());
                })
            };
            hub.retract_through(7, &|| false);
            assert!(
                taken.load(std::sync::atomic::Ordering::SeqCst),
                "retract returned before the lossless client took frame 7"
            );
            writer.join().unwrap();
            assert_eq!(hub.deregister(id).sent, 1);
        });
    }

    #[test]
    fn retract_of_unpublished_frame_does_not_wait() {
        live(|| {
            let hub: Hub<TestFrame> = Hub::new(2);
            let _id = hub.register(Policy::Lossless);
            hub.retract_through(99, &|| false);
        });
    }
}
