//! Numbered server messages (`ServerEnvelope.first_seq`), sans IO: which are new, which
//! a resume sent again, and how many went missing in between.

/// What one numbered message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Not seen before; `missing` numbers were skipped just before it (0 normally).
    New { missing: u64 },
    /// Already received: a resume sent it again. Skip it.
    Repeat,
}

/// The last numbered message received in the current session.
#[derive(Debug, Default)]
pub(crate) struct Received {
    last: u64,
    /// The session's numbering is not known here (an earlier process's session): the
    /// next number received sets it.
    unknown: bool,
}

impl Received {
    /// The number to report in pings.
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// The number to report when resuming: none while the numbering is unknown.
    pub(crate) fn known(&self) -> Option<u64> {
        (!self.unknown).then_some(self.last)
    }

    /// A new session numbers its messages from 1 again.
    pub(crate) fn reset(&mut self) {
        (self.last, self.unknown) = (0, false);
    }

    /// A session numbered elsewhere (an earlier process's): its next message is
    /// neither a repeat nor after a gap.
    pub(crate) fn forget(&mut self) {
        (self.last, self.unknown) = (0, true);
    }

    /// Message number `n` arrived.
    pub(crate) fn arrive(&mut self, n: u64) -> Arrival {
        if std::mem::take(&mut self.unknown) {
            self.last = n;
            return Arrival::New { missing: 0 };
        }
        if n <= self.last {
            return Arrival::Repeat;
        }
        let missing = n - self.last - 1;
        self.last = n;
        Arrival::New { missing }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_repeated_and_missing() {
        let mut r = Received::default();
        assert_eq!(r.arrive(1), Arrival::New { missing: 0 });
        assert_eq!(r.arrive(2), Arrival::New { missing: 0 });
        // A resume that reported 2 but got 2 again (a repeat), then 3.
        assert_eq!(r.arrive(2), Arrival::Repeat);
        assert_eq!(r.arrive(3), Arrival::New { missing: 0 });
        // The server no longer had 4 to 6.
        assert_eq!(r.arrive(7), Arrival::New { missing: 3 });
        assert_eq!(r.last(), 7);
        r.reset();
        assert_eq!(r.arrive(1), Arrival::New { missing: 0 });
    }

    #[test]
    fn a_forgotten_numbering_starts_at_the_next_number() {
        let mut r = Received::default();
        assert_eq!(r.known(), Some(0));
        r.forget();
        assert_eq!(r.known(), None, "nothing to report when resuming");
        assert_eq!(r.arrive(100_000), Arrival::New { missing: 0 });
        assert_eq!(r.known(), Some(100_000));
        assert_eq!(r.arrive(100_000), Arrival::Repeat);
        assert_eq!(r.arrive(100_003), Arrival::New { missing: 2 });
    }
}
