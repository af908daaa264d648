//! The tick counters of the node's periodic work (election rounds, resends, batch flushes).

/// Counts ticks and fires every `period` of them.
pub(crate) struct Clock {
    period: u64,
    elapsed: u64,
}

impl Clock {
    pub(crate) fn new(period: u64) -> Self {
        Clock { period, elapsed: 0 }
    }

    /// Starts a new period now.
    pub(crate) fn restart(&mut self) {
        self.elapsed = 0;
    }

    /// Counts one tick; true when it ends a period (the next one starts then).
    pub(crate) fn tick(&mut self) -> bool {
        self.elapsed += 1;
        if self.elapsed >= self.period {
            self.elapsed = 0;
            true
        } else {
            false
        }
    }
}
