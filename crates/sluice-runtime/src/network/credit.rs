//! Credit-based flow control of one channel, as Flink's network stack does
//! it: the receiver grants one credit per buffer it has room for, and the
//! sender sends a buffer of records only against a credit. Control elements
//! (watermarks, barriers, idle status, end of input) need none, so a barrier
//! never waits for room and unaligned checkpoints keep working.
//!
//! Both ends of a remote channel keep a [`Credit`]:
//! - the sender's counts the buffers it may still send; the connection's
//!   reader grants to it when the receiver's credit announcement arrives,
//!   and the sending task takes from it, waiting while there is none;
//! - the receiver's counts the credit it announced and has not yet seen
//!   used; a buffer arriving without one is a protocol violation.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The channel was closed (its connection broke or its attempt ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A channel's credit at one end: buffers that may still be sent.
#[derive(Debug, Default)]
pub struct Credit {
    state: Mutex<CreditState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct CreditState {
    available: u32,
    /// The receiver has announced the channel (its first grant); before
    /// that nothing may be sent, not even a control element, because the
    /// receiver would have nowhere to put it.
    open: bool,
    closed: bool,
}

impl Credit {
    /// No credit, not yet opened by the receiver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` credits (and opens the channel).
    pub fn grant(&self, n: u32) {
        let mut s = self.state.lock().expect("credit lock");
        s.available = s.available.saturating_add(n);
        s.open = true;
        drop(s);
        self.changed.notify_all();
    }

    /// Takes one credit for a buffer of records, waiting while there is
    /// none. Returns how long it waited.
    pub fn take(&self) -> Result<Duration, Closed> {
        let mut s = self.state.lock().expect("credit lock");
        if s.closed {
            return Err(Closed);
        }
        if s.available > 0 {
            s.available -= 1;
            return Ok(Duration::ZERO);
        }
        let started = Instant::now();
        while s.available == 0 && !s.closed {
            s = self.changed.wait(s).expect("credit lock");
        }
        if s.closed {
            return Err(Closed);
        }
        s.available -= 1;
        Ok(started.elapsed())
    }

    /// Takes one credit if there is one, without waiting.
    pub fn try_take(&self) -> Result<bool, Closed> {
        let mut s = self.state.lock().expect("credit lock");
        if s.closed {
            return Err(Closed);
        }
        if s.available == 0 {
            return Ok(false);
        }
        s.available -= 1;
        Ok(true)
    }

    /// Waits until the receiver has opened the channel (control elements
    /// need no credit, only an open channel). Returns how long it waited.
    pub fn wait_open(&self) -> Result<Duration, Closed> {
        let mut s = self.state.lock().expect("credit lock");
        if s.open && !s.closed {
            return Ok(Duration::ZERO);
        }
        let started = Instant::now();
        while !s.open && !s.closed {
            s = self.changed.wait(s).expect("credit lock");
        }
        if s.closed {
            return Err(Closed);
        }
        Ok(started.elapsed())
    }

    /// Credits available now.
    pub fn available(&self) -> u32 {
        self.state.lock().expect("credit lock").available
    }

    /// Closes the channel: waiting and later takes fail.
    pub fn close(&self) {
        self.state.lock().expect("credit lock").closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn nothing_is_sent_without_credit() {
        let credit = Credit::new();
        assert_eq!(credit.try_take(), Ok(false));
        credit.grant(2);
        assert_eq!(credit.try_take(), Ok(true));
        assert_eq!(credit.try_take(), Ok(true));
        assert_eq!(credit.try_take(), Ok(false), "two credits allow two buffers, not three");
    }

    #[test]
    fn a_sender_without_credit_waits_until_the_receiver_grants_one() {
        let credit = Arc::new(Credit::new());
        credit.grant(1);
        credit.take().unwrap();
        let sender = {
            let credit = credit.clone();
            std::thread::spawn(move || credit.take())
        };
        // The sender cannot finish before the grant: it has no credit.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!sender.is_finished());
        credit.grant(1);
        assert!(sender.join().unwrap().unwrap() > Duration::ZERO);
        assert_eq!(credit.available(), 0);
    }

    #[test]
    fn a_channel_opens_with_its_first_grant_even_of_zero_credits() {
        let credit = Credit::new();
        let waiter = {
            let credit = Arc::new(credit);
            let c = credit.clone();
            (std::thread::spawn(move || c.wait_open()), credit)
        };
        waiter.1.grant(0);
        assert!(waiter.0.join().unwrap().is_ok());
        assert_eq!(waiter.1.available(), 0);
    }

    #[test]
    fn closing_wakes_a_waiting_sender_with_an_error() {
        let credit = Arc::new(Credit::new());
        let sender = {
            let credit = credit.clone();
            std::thread::spawn(move || credit.take())
        };
        let opener = {
            let credit = credit.clone();
            std::thread::spawn(move || credit.wait_open())
        };
        credit.close();
        assert_eq!(sender.join().unwrap(), Err(Closed));
        assert_eq!(opener.join().unwrap(), Err(Closed));
        assert_eq!(credit.try_take(), Err(Closed));
    }
}
