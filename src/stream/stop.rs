//! A stop request that can be waited on: set once (by a signal, or by an output whose consumer
//! is gone), it wakes whoever waits for it, with or without a deadline. It replaces fixed-slice
//! polling of an atomic flag: a render loop paced at 1 fps, or a writer waiting out a backoff,
//! notices a stop at once instead of at its next slice.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

/// A flag that is set once and can be waited on.
#[derive(Debug, Default)]
pub struct StopFlag {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopFlag {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and wakes every waiter. Allocates nothing: safe from a signal thread.
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    /// Whether the flag is set.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the waiters without setting the flag, so that they look again at whatever else
    /// they wait for (see [`StopFlag::wait_while`]).
    pub fn poke(&self) {
        let _guard = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        self.changed.notify_all();
    }

    /// Waits until the flag is set or `deadline` passes; returns whether it is set.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stopped = self
                .changed
                .wait_timeout(stopped, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *stopped
    }

    /// Waits until the flag is set or `keep_waiting` (looked at whenever the flag is set or
    /// poked) says no more; returns whether the flag is set.
    pub fn wait_while(&self, keep_waiting: &dyn Fn() -> bool) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        *self
            .changed
            .wait_while(stopped, |stopped| !*stopped && keep_waiting())
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::StopFlag;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn a_stop_wakes_a_waiter_long_before_its_deadline() {
        let flag = StopFlag::new();
        let far = Instant::now() + Duration::from_secs(3600);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| flag.wait_until(far));
            flag.stop();
            assert!(waiter.join().unwrap());
        });
        assert!(flag.is_stopped());
        assert!(flag.wait_until(far), "set stays set");
    }

    #[test]
    fn a_deadline_passes_without_a_stop() {
        let flag = StopFlag::new();
        assert!(!flag.wait_until(Instant::now() + Duration::from_millis(1)));
        assert!(!flag.is_stopped());
    }

    #[test]
    fn a_poke_lets_a_waiter_look_at_its_own_condition() {
        let flag = StopFlag::new();
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| flag.wait_while(&|| !done.load(Ordering::SeqCst)));
            done.store(true, Ordering::SeqCst);
            flag.poke();
            assert!(!waiter.join().unwrap(), "woken by the poke, not a stop");
        });
    }
}
