//! The workflow of a dataset version, with its one transition function.
//!
//! ```text
//! incomplete --complete--> draft --publish--> published
//!     |                      |
//!     +--abandon--+          +--discard--+
//!                 v                      v
//!             discarded              discarded
//! ```
//!
//! * `incomplete`: the row reserves the version's number while its files are moved into place
//!   (the upload's last step); a server that died there leaves it to [`super::ops::reconcile`],
//!   which abandons it at the next start.
//! * `draft`: whole, shown only on its preview page (provider's organisation, platform staff).
//! * `published`: read by jobs (of the schema version their agreement accepted).
//! * `discarded`: never read; its files are removed.

use serde::Serialize;

use crate::workflow::{Machine, Refusal};

/// The state of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Its files are being moved into place.
    Incomplete,
    /// Uploaded whole; waits for its provider to publish or discard it.
    Draft,
    /// Read by jobs.
    Published,
    /// Discarded by its provider, or abandoned incomplete.
    Discarded,
}

impl VersionState {
    /// Every state.
    pub const ALL: [VersionState; 4] = [
        Self::Incomplete,
        Self::Draft,
        Self::Published,
        Self::Discarded,
    ];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incomplete => "incomplete",
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Discarded => "discarded",
        }
    }

    /// The message key of its label.
    pub fn label_key(self) -> &'static str {
        match self {
            Self::Incomplete => "catalog.vstate.incomplete",
            Self::Draft => "catalog.vstate.draft",
            Self::Published => "catalog.vstate.published",
            Self::Discarded => "catalog.vstate.discarded",
        }
    }

    /// The CSS badge class of the state.
    pub fn badge(self) -> &'static str {
        match self {
            Self::Published => "badge-ok",
            Self::Incomplete | Self::Draft => "badge-pending",
            Self::Discarded => "badge-disabled",
        }
    }
}

/// What can happen to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionAction {
    /// Its files are in place (the upload's last step).
    Complete,
    /// The upload died before its files were in place (found at start).
    Abandon,
    /// The provider publishes it from its preview.
    Publish,
    /// The provider discards it.
    Discard,
}

impl VersionAction {
    /// Every action.
    pub const ALL: [VersionAction; 4] =
        [Self::Complete, Self::Abandon, Self::Publish, Self::Discard];
}

impl Machine for VersionState {
    type Action = VersionAction;
    const KIND: &'static str = "version";
    const ALL: &'static [Self] = &Self::ALL;

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of versions.
    fn decide(self, action: VersionAction) -> Result<VersionState, Refusal> {
        use VersionAction as A;
        use VersionState as S;
        let refuse = |key| Err(Refusal::new(key));
        match (self, action) {
            (S::Incomplete, A::Complete) => Ok(S::Draft),
            (S::Incomplete, A::Abandon) | (S::Draft, A::Discard) => Ok(S::Discarded),
            (S::Draft, A::Publish) => Ok(S::Published),
            (S::Discarded, _) => refuse("catalog.refuse.version_discarded"),
            (S::Incomplete, _) => refuse("catalog.refuse.version_incomplete"),
            (S::Published, A::Publish | A::Discard) => refuse("catalog.refuse.version_published"),
            (S::Draft | S::Published, A::Complete | A::Abandon) => {
                refuse("catalog.refuse.version_complete")
            }
        }
    }
}

crate::stored_state!(VersionState);

#[cfg(test)]
mod tests {
    use super::*;

    use VersionAction as A;
    use VersionState as S;

    /// The table of legal transitions, written independently of [`Machine::decide`].
    fn legal(s: VersionState, a: VersionAction) -> Option<VersionState> {
        Some(match (s, a) {
            (S::Incomplete, A::Complete) => S::Draft,
            (S::Incomplete, A::Abandon) => S::Discarded,
            (S::Draft, A::Publish) => S::Published,
            (S::Draft, A::Discard) => S::Discarded,
            _ => return None,
        })
    }

    #[test]
    fn every_version_transition() {
        let mut legal_count = 0;
        for s in S::ALL {
            for a in A::ALL {
                match (s.decide(a), legal(s, a)) {
                    (Ok(got), Some(want)) => {
                        assert_eq!(got, want, "{s:?} {a:?}");
                        legal_count += 1;
                    }
                    (Err(r), None) => {
                        assert!(r.key.starts_with("catalog.refuse."), "{s:?} {a:?}");
                    }
                    (got, want) => panic!("{s:?} {a:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(legal_count, 4);
        assert_eq!(
            S::Published.decide(A::Discard),
            Err(Refusal::new("catalog.refuse.version_published"))
        );
        assert_eq!(
            S::Discarded.decide(A::Publish),
            Err(Refusal::new("catalog.refuse.version_discarded"))
        );
    }

    #[test]
    fn states_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Ok(s));
        }
        assert!(S::parse("nonsense").is_err());
    }
}
