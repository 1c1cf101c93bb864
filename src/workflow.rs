//! The workflow kernel: one way to declare a state machine and one way to commit a move.
//!
//! Every workflow of the platform (a call, an application, an agreement, a run, …) is a
//! [`Machine`]: an enum of states stored as text codes, an enum of actions and ONE function,
//! [`Machine::decide`], saying where each action leads from each state or why it is refused.
//! A refusal is a [`Refusal`]: a message key with its arguments, shown the same way on pages
//! (409 with the reason beside the form), in the API (`{"error": …}`) and in the CLI.
//!
//! A command (a domain's `ops.rs` function) moves an object with [`commit`], inside the one
//! write transaction in which it also checks every rule the move depends on and queues its
//! mail ([`crate::db::write_transaction`]):
//!
//! 1. the state is decided from the state the command read ([`Machine::decide`]);
//! 2. the row is updated only where its state is still the one read (compare-and-set): a
//!    concurrent move that got there first makes this one a refusal (`common.changed_meanwhile`)
//!    that changes nothing, on SQLite and on PostgreSQL alike;
//! 3. the command's audit entry is appended to the hash-chained log.
//!
//! Stored states are read as typed enums: a model field is declared
//! `#[diesel(deserialize_as = String)] state: TheState`, and a code that names no state is an
//! error when the row is loaded ([`UnknownState`]), never a fallback to some live state.

use std::fmt;

use diesel::QueryResult;

use crate::db::DbConnection;
use crate::errors::AppError;
use crate::supervision::audit::{self, Actor};

/// Why a command was refused: the message key and its arguments. It changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The message-catalog key, e.g. `agreements.refuse.not_in_force`.
    pub key: &'static str,
    /// Values for `{name}` placeholders in the message.
    pub args: Vec<(&'static str, String)>,
}

impl Refusal {
    /// A refusal with message `key`.
    pub const fn new(key: &'static str) -> Self {
        Refusal {
            key,
            args: Vec::new(),
        }
    }

    /// Adds a `{name}` argument to the message.
    pub fn arg(mut self, name: &'static str, value: impl ToString) -> Self {
        self.args.push((name, value.to_string()));
        self
    }
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        r.args
            .into_iter()
            .fold(AppError::conflict(r.key), |e, (name, value)| {
                e.arg(name, value)
            })
    }
}

/// A stored state code that names no state of its machine: the row is unreadable, never read
/// as some other state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState {
    /// The machine's object kind.
    pub kind: &'static str,
    /// The stored code.
    pub code: String,
}

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} state {:?}", self.kind, self.code)
    }
}

impl std::error::Error for UnknownState {}

/// A workflow's state machine.
pub trait Machine: Copy + Eq + fmt::Debug + Sized + 'static {
    /// What can happen to the object.
    type Action: Copy + fmt::Debug;

    /// The kind of object (`agreement`), as errors name it.
    const KIND: &'static str;

    /// Every state.
    const ALL: &'static [Self];

    /// The stored code of a state.
    fn code(self) -> &'static str;

    /// The one function deciding every move: the state `action` leads to from `self`, or why
    /// it may not happen.
    fn decide(self, action: Self::Action) -> Result<Self, Refusal>;

    /// The state stored as `code`.
    fn parse(code: &str) -> Result<Self, UnknownState> {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.code() == code)
            .ok_or_else(|| UnknownState {
                kind: Self::KIND,
                code: code.to_owned(),
            })
    }
}

/// Implements `TryFrom<String>` (for `#[diesel(deserialize_as = String)]`) and `Display` (the
/// stored code) for a [`Machine`]'s state enum.
#[macro_export]
macro_rules! stored_state {
    ($state:ty) => {
        impl TryFrom<String> for $state {
            type Error = $crate::workflow::UnknownState;

            fn try_from(code: String) -> Result<Self, Self::Error> {
                <$state as $crate::workflow::Machine>::parse(&code)
            }
        }

        impl std::fmt::Display for $state {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::workflow::Machine::code(*self))
            }
        }
    };
}

/// The audit entry of a command.
pub struct Entry<'a> {
    /// Who acts (a user, or the scheduler).
    pub actor: &'a Actor,
    /// The action code, `<kind>.<verb>` (`agreement.seal`).
    pub action: String,
    /// The kind of object the entry is filed under.
    pub object_type: &'static str,
    /// Its id.
    pub object_id: String,
    /// The details.
    pub details: serde_json::Value,
}

impl Entry<'_> {
    /// Appends the entry to the audit log (in the caller's transaction).
    pub fn record(self, conn: &mut DbConnection) -> QueryResult<i64> {
        audit::record(
            conn,
            self.actor,
            &self.action,
            self.object_type,
            &self.object_id,
            self.details,
        )
    }
}

/// One move of one object, as a command commits it.
pub struct Move<'a, M: Machine> {
    /// The state the command read the object in.
    pub from: M,
    /// What happens.
    pub action: M::Action,
    /// The command's audit entry. `None` only for a move that another move of the same
    /// command (in the same transaction) records: an order closed because its agreement
    /// ended is recorded in the agreement's exit entry.
    pub audit: Option<Entry<'a>>,
}

/// Commits `mv` in the caller's transaction: decides it, compare-and-sets the state with
/// `cas(conn, from, to)` (which must update the object's row only where its state is still
/// `from`, and return the number of rows updated), and appends the audit entry. Returns the
/// new state. A refused or lost move is an error, so the caller's transaction rolls back
/// whatever it had written.
pub fn commit<M: Machine>(
    conn: &mut DbConnection,
    mv: Move<'_, M>,
    cas: impl FnOnce(&mut DbConnection, &'static str, &'static str) -> QueryResult<usize>,
) -> Result<M, AppError> {
    let to = mv.from.decide(mv.action)?;
    if cas(conn, mv.from.code(), to.code())? != 1 {
        return Err(Refusal::new("common.changed_meanwhile").into());
    }
    if let Some(entry) = mv.audit {
        entry.record(conn)?;
    }
    Ok(to)
}

/// Every (state, action) pair of a machine with what [`Machine::decide`] answers: the table a
/// machine's test compares with the documented diagram.
pub fn table<M: Machine>(actions: &[M::Action]) -> Vec<(M, M::Action, Result<M, Refusal>)> {
    M::ALL
        .iter()
        .flat_map(|&s| actions.iter().map(move |&a| (s, a, s.decide(a))))
        .collect()
}
