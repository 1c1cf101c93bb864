//! Failed-login throttling, per account and per source address (in memory, sliding window).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts recent failed logins and refuses further attempts past a limit.
#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    max_account: u32,
    max_address: u32,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    /// A throttle allowing `max_account` failures per account and `max_address` per address
    /// within `window`.
    pub fn new(window: Duration, max_account: u32, max_address: u32) -> Self {
        Self {
            window,
            max_account,
            max_address,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(account: &str, address: &str) -> [(String, bool); 2] {
        [
            (format!("u:{}", account.trim().to_lowercase()), true),
            (format!("a:{address}"), false),
        ]
    }

    /// `Err(seconds to wait)` when the account or the address is locked out.
    pub fn check(&self, account: &str, address: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = 0u64;
        for (key, is_account) in Self::keys(account, address) {
            let limit = if is_account {
                self.max_account
            } else {
                self.max_address
            } as usize;
            if let Some(q) = map.get_mut(&key) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    q.pop_front();
                }
                if q.len() >= limit
                    && let Some(oldest) = q.front()
                {
                    let left = self.window.saturating_sub(now.duration_since(*oldest));
                    wait = wait.max(left.as_secs().max(1));
                }
            }
        }
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    /// Records one failed attempt for the account and the address.
    pub fn record_failure(&self, account: &str, address: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        for (key, _) in Self::keys(account, address) {
            let q = map.entry(key).or_default();
            q.push_back(now);
            while q.len() > 1000 {
                q.pop_front();
            }
        }
    }

    /// Forgets the failures of an account after a successful login.
    pub fn clear_account(&self, account: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("u:{}", account.trim().to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_limit() {
        let t = Throttle::new(Duration::from_secs(60), 2, 3);
        assert!(t.check("a", "1.1.1.1").is_ok());
        t.record_failure("a", "1.1.1.1");
        t.record_failure("A", "1.1.1.1");
        assert!(t.check("a", "2.2.2.2").is_err());
        assert!(t.check("b", "2.2.2.2").is_ok());
        t.record_failure("b", "1.1.1.1");
        assert!(t.check("c", "1.1.1.1").is_err());
        t.clear_account("a");
        assert!(t.check("a", "2.2.2.2").is_ok());
    }
}
