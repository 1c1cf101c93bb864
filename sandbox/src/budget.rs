//! The run's host-buffer budget (ABI v2, guarantee 9). Every buffer the host allocates for a
//! run as it grows with the data or the manifest is charged to one budget per run, all
//! instances and threads together: raw and compacted (person, cell) contributions, per-person
//! totals, the persons of the per-person stage, each tally thread's totals and sorting
//! buffers, member lists and the released tables. A charge that would take the run over
//! [`Limits::max_host_bytes`](crate::Limits::max_host_bytes) ends it as `too_many_groups`,
//! naming the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::Outcome;

/// The budget of one run.
#[derive(Debug)]
pub(crate) struct HostBudget {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
}

impl HostBudget {
    /// A budget of `limit` bytes, nothing charged.
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(HostBudget {
            limit,
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        })
    }

    /// A holding of `bytes` for the buffers `what` names (in the outcome when the budget is
    /// exceeded), released when dropped.
    pub(crate) fn hold(self: &Arc<Self>, what: &'static str, bytes: u64) -> Result<Held, Outcome> {
        let mut held = Held {
            budget: Arc::clone(self),
            what,
            bytes: 0,
        };
        held.set(bytes)?;
        Ok(held)
    }

    /// The most that was charged at once.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Bytes charged to a [`HostBudget`] for one set of buffers; dropping it releases them.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<HostBudget>,
    what: &'static str,
    bytes: u64,
}

impl Held {
    /// Charges `bytes` in place of what this holding charged before. Fails when the run's
    /// charges together would exceed the limit (the bytes stay charged until the holding is
    /// dropped, as the buffers exist until then).
    pub(crate) fn set(&mut self, bytes: u64) -> Result<(), Outcome> {
        let budget = &self.budget;
        if bytes <= self.bytes {
            budget.used.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
            self.bytes = bytes;
            return Ok(());
        }
        let more = bytes - self.bytes;
        let total = budget.used.fetch_add(more, Ordering::Relaxed) + more;
        self.bytes = bytes;
        budget.peak.fetch_max(total, Ordering::Relaxed);
        if total > budget.limit {
            return Err(Outcome::TooManyGroups {
                reason: format!(
                    "the run's host buffers would take more than the limit of {} bytes (max_host_bytes), reached by the {}: too many (person, cell) pairs, persons or cells",
                    budget.limit, self.what
                ),
            });
        }
        Ok(())
    }

    /// Adds `bytes` to this holding.
    pub(crate) fn add(&mut self, bytes: u64) -> Result<(), Outcome> {
        self.set(self.bytes.saturating_add(bytes))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdings_share_one_limit_and_release_on_drop() {
        let budget = HostBudget::new(100);
        let mut a = budget.hold("a", 60).unwrap();
        let b = budget.hold("b", 30).unwrap();
        assert!(matches!(
            budget.hold("tallies", 11),
            Err(Outcome::TooManyGroups { reason })
                if reason.contains("max_host_bytes") && reason.contains("the tallies")
        ));
        a.set(10).unwrap();
        let mut c = budget.hold("c", 60).unwrap();
        drop(b);
        c.add(30).unwrap();
        assert!(c.add(1).is_err());
        assert_eq!(budget.peak(), 101);
        drop((a, c));
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }
}
