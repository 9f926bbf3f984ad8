//! Deadline-based fixed-tick scheduling, apart from any clock so it can be tested on a
//! virtual one.
//!
//! Tick `k` is due at `start + k × period`, computed from `k` each time (never by adding
//! periods up), so there is no drift however long the server runs. When a tick runs late the
//! loop catches up by running the missed ticks back to back; each tick that starts a whole
//! period or more after its deadline is an *overrun* and is counted. A server that falls more
//! than `max_catch_up` ticks behind skips the rest (counted too) instead of spiralling.

use std::time::Duration;

/// What the tick loop should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Run tick `k` now.
    Run(u64),
    /// Nothing is due for this long.
    Sleep(Duration),
}

/// The fixed-tick schedule.
#[derive(Debug, Clone)]
pub struct TickScheduler {
    period_ns: u128,
    start: Duration,
    next: u64,
    overruns: u64,
    skipped: u64,
    max_catch_up: u64,
}

impl TickScheduler {
    /// A schedule of `rate` ticks per second whose tick 0 is due at `start`.
    pub fn new(rate: u32, start: Duration, max_catch_up: u64) -> Self {
        Self {
            period_ns: 1_000_000_000u128 / u128::from(rate.max(1)),
            start,
            next: 0,
            overruns: 0,
            skipped: 0,
            max_catch_up: max_catch_up.max(1),
        }
    }

    /// When tick `k` is due.
    pub fn deadline(&self, k: u64) -> Duration {
        let ns = self.start.as_nanos() + self.period_ns * u128::from(k);
        Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
    }

    /// The tick length.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns as u64)
    }

    /// Decides, at time `now`, whether to run the next tick or how long to sleep.
    pub fn poll(&mut self, now: Duration) -> Poll {
        let due = self.deadline(self.next);
        if now < due {
            return Poll::Sleep(due - now);
        }
        let late_ns = (now - due).as_nanos();
        let behind = (late_ns / self.period_ns) as u64;
        if behind > self.max_catch_up {
            // Give up on the ticks we cannot make up; keep the grid (no drift).
            let skip = behind - self.max_catch_up;
            self.next += skip;
            self.skipped += skip;
            self.overruns += skip;
        }
        if late_ns >= self.period_ns {
            self.overruns += 1;
        }
        let k = self.next;
        self.next += 1;
        Poll::Run(k)
    }

    /// Ticks that started a period or more late (skipped ticks included).
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// Ticks skipped because the loop fell too far behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_drift_over_ten_thousand_ticks() {
        // 60 Hz has a period that is not a whole number of nanoseconds' worth of 1/60 s
        // summed naively; the deadline is computed, not accumulated.
        let mut s = TickScheduler::new(60, Duration::from_secs(5), 8);
        let mut now = Duration::from_secs(5);
        let mut ran = 0u64;
        while ran < 10_000 {
            match s.poll(now) {
                Poll::Run(k) => {
                    assert_eq!(k, ran);
                    ran += 1;
                    now += Duration::from_micros(300); // the tick's own work
                }
                Poll::Sleep(d) => now += d,
            }
        }
        // Tick 9,999 ran exactly at its deadline; the 10,000th is due at 5 s + 10,000/60 s.
        let due = s.deadline(10_000);
        assert_eq!(due.as_nanos(), 5_000_000_000 + 10_000 * 16_666_666);
        assert_eq!(s.overruns(), 0);
        assert_eq!(s.poll(due), Poll::Run(10_000));
    }

    #[test]
    fn overruns_are_counted_and_caught_up_on_the_grid() {
        let mut s = TickScheduler::new(10, Duration::ZERO, 100);
        assert_eq!(s.poll(Duration::ZERO), Poll::Run(0));
        // Tick 0 took 350 ms: ticks 1, 2, 3 are due; run them back to back.
        let now = Duration::from_millis(350);
        assert_eq!(s.poll(now), Poll::Run(1)); // 250 ms late
        assert_eq!(s.poll(now), Poll::Run(2)); // 150 ms late
        assert_eq!(s.poll(now), Poll::Run(3)); // 50 ms late: not an overrun
        assert_eq!(s.overruns(), 2);
        // Back on the original grid: tick 4 at 400 ms.
        assert_eq!(s.poll(now), Poll::Sleep(Duration::from_millis(50)));
        assert_eq!(s.poll(Duration::from_millis(400)), Poll::Run(4));
    }

    #[test]
    fn hopeless_backlogs_are_skipped_and_counted() {
        let mut s = TickScheduler::new(100, Duration::ZERO, 5);
        assert_eq!(s.poll(Duration::ZERO), Poll::Run(0));
        // Stalled for a full second: 100 ticks due, at most 5 are caught up.
        let now = Duration::from_secs(1);
        let Poll::Run(k) = s.poll(now) else {
            panic!("a tick is due")
        };
        assert_eq!(k, 95);
        assert_eq!(s.skipped(), 94);
        let mut ran = 1;
        while let Poll::Run(_) = s.poll(now) {
            ran += 1;
        }
        assert_eq!(ran, 6);
        assert_eq!(s.poll(now), Poll::Sleep(Duration::from_millis(10)));
    }
}
