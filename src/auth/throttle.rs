//! Failed-login throttling, per account and per source address, over a sliding window.
//!
//! The failures are rows of `login_failures` (one for the account, one for the address, per
//! failed attempt), so every server sharing the database counts the same attempts and a restart
//! forgets nothing. A subject is locked out while it has at least its limit of failures in the
//! last window; rows older than the window are deleted when the same subject fails again and by
//! the scheduler ([`purge`]). Times come from the platform [`crate::calendar::Clock`].

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::AppState;
use crate::db::{self, DbConnection};
use crate::schema::login_failures;

/// Longest window, in days (longer configured windows are cut to it).
pub const MAX_WINDOW_DAYS: i64 = 365;

/// Longest subject kept, in characters (longer account names are cut; they count the same).
const MAX_SUBJECT_CHARS: usize = 200;

/// Counts recent failed logins and refuses further attempts past a limit.
#[derive(Debug)]
pub struct Throttle {
    window: TimeDelta,
    max_account: u32,
    max_address: u32,
}

impl Throttle {
    /// A throttle allowing `max_account` failures per account and `max_address` per address
    /// within `window` (at most [`MAX_WINDOW_DAYS`] days).
    pub fn new(window: std::time::Duration, max_account: u32, max_address: u32) -> Self {
        let longest = TimeDelta::days(MAX_WINDOW_DAYS);
        Self {
            window: TimeDelta::from_std(window).map_or(longest, |w| w.min(longest)),
            max_account: max_account.max(1),
            max_address: max_address.max(1),
        }
    }

    /// The (scope, subject, limit) of the account and of the address.
    fn subjects(&self, account: &str, address: &str) -> [(&'static str, String, u32); 2] {
        let cut = |s: &str| s.chars().take(MAX_SUBJECT_CHARS).collect::<String>();
        [
            (
                "account",
                cut(&account.trim().to_lowercase()),
                self.max_account,
            ),
            ("address", cut(address), self.max_address),
        ]
    }

    /// `Err(seconds to wait)` when the account or the address is locked out at `now`.
    pub fn check(
        &self,
        conn: &mut DbConnection,
        account: &str,
        address: &str,
        now: NaiveDateTime,
    ) -> QueryResult<Result<(), u64>> {
        let since = now - self.window;
        let mut wait = 0u64;
        for (scope, subject, limit) in self.subjects(account, address) {
            let recent: Vec<NaiveDateTime> = login_failures::table
                .filter(login_failures::scope.eq(scope))
                .filter(login_failures::subject.eq(&subject))
                .filter(login_failures::at.gt(since))
                .order(login_failures::at.desc())
                .limit(i64::from(limit))
                .select(login_failures::at)
                .load(conn)?;
            if let Some(oldest) = recent.get(limit as usize - 1) {
                let left = (*oldest + self.window - now).num_seconds().max(1);
                wait = wait.max(left as u64);
            }
        }
        Ok(if wait > 0 { Err(wait) } else { Ok(()) })
    }

    /// Records one failed attempt at `now` for the account and the address (and forgets their
    /// failures older than the window).
    pub fn record_failure(
        &self,
        conn: &mut DbConnection,
        account: &str,
        address: &str,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        let now = db::to_micros(now);
        db::write_transaction(conn, |conn| {
            for (scope, subject, _) in self.subjects(account, address) {
                diesel::delete(
                    login_failures::table
                        .filter(login_failures::scope.eq(scope))
                        .filter(login_failures::subject.eq(&subject))
                        .filter(login_failures::at.le(now - self.window)),
                )
                .execute(conn)?;
                diesel::insert_into(login_failures::table)
                    .values((
                        login_failures::scope.eq(scope),
                        login_failures::subject.eq(&subject),
                        login_failures::at.eq(now),
                    ))
                    .execute(conn)?;
            }
            Ok(())
        })
    }

    /// Forgets the failures of an account after a successful login.
    pub fn clear_account(&self, conn: &mut DbConnection, account: &str) -> QueryResult<()> {
        let [(scope, subject, _), _] = self.subjects(account, "");
        db::write_transaction(conn, |conn| {
            diesel::delete(
                login_failures::table
                    .filter(login_failures::scope.eq(scope))
                    .filter(login_failures::subject.eq(&subject)),
            )
            .execute(conn)
            .map(drop)
        })
    }

    /// Deletes every failure older than the window at `now`; how many.
    pub fn purge(&self, conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
        db::write_transaction(conn, |conn| {
            diesel::delete(login_failures::table.filter(login_failures::at.le(now - self.window)))
                .execute(conn)
        })
    }
}

/// The scheduler's work: deletes failed logins older than the throttle window.
pub fn purge(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.pool.get()?;
    state.throttle.purge(&mut conn, state.clock.now())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_limit_and_for_the_rest_of_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = db::connect(&url).unwrap();
        let conn = &mut *pool.get().unwrap();
        let t = Throttle::new(std::time::Duration::from_secs(60), 2, 3);
        let t0 = db::now();
        let at = |s: i64| t0 + TimeDelta::seconds(s);
        assert_eq!(t.check(conn, "a", "1.1.1.1", at(0)).unwrap(), Ok(()));
        t.record_failure(conn, "a", "1.1.1.1", at(0)).unwrap();
        t.record_failure(conn, " A ", "1.1.1.1", at(10)).unwrap();
        assert_eq!(
            t.check(conn, "a", "2.2.2.2", at(10)).unwrap(),
            Err(50),
            "locked until the first failure leaves the window"
        );
        assert_eq!(t.check(conn, "b", "2.2.2.2", at(10)).unwrap(), Ok(()));
        t.record_failure(conn, "b", "1.1.1.1", at(20)).unwrap();
        assert!(t.check(conn, "c", "1.1.1.1", at(20)).unwrap().is_err());
        assert_eq!(t.check(conn, "a", "2.2.2.2", at(60)).unwrap(), Ok(()));
        t.clear_account(conn, "a").unwrap();
        t.record_failure(conn, "a", "3.3.3.3", at(30)).unwrap();
        assert_eq!(
            t.check(conn, "a", "2.2.2.2", at(30)).unwrap(),
            Ok(()),
            "cleared"
        );
        assert_eq!(
            t.purge(conn, at(85)).unwrap(),
            4,
            "the failures at 0, 10 and 20"
        );
        let left: i64 = login_failures::table.count().get_result(conn).unwrap();
        assert_eq!(left, 2);
    }
}
