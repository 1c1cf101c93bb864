//! The two workflows of accounts on the workflow kernel: an organisation's status and a user's.
//!
//! ```text
//! organisation: pending --verify--> verified --disable--> disabled --verify--> verified
//!               pending --disable--> disabled
//! user:         active --disable--> disabled --enable--> active
//! ```

use serde::Serialize;

use crate::workflow::{Machine, Refusal};

/// The life cycle of an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgStatus {
    /// Registered, not yet verified by the platform.
    Pending,
    /// Verified by the platform admin or regulator.
    Verified,
    /// Disabled: its users cannot log in.
    Disabled,
}

/// A change of an organisation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgAction {
    /// Verify (also re-enables a disabled organisation).
    Verify,
    /// Disable.
    Disable,
}

impl OrgStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrgStatus::Pending => "pending",
            OrgStatus::Verified => "verified",
            OrgStatus::Disabled => "disabled",
        }
    }
}

impl Machine for OrgStatus {
    type Action = OrgAction;
    const KIND: &'static str = "organisation";
    const ALL: &'static [Self] = &[OrgStatus::Pending, OrgStatus::Verified, OrgStatus::Disabled];

    fn code(self) -> &'static str {
        self.as_str()
    }

    fn decide(self, action: OrgAction) -> Result<OrgStatus, Refusal> {
        match (self, action) {
            (OrgStatus::Pending | OrgStatus::Disabled, OrgAction::Verify) => {
                Ok(OrgStatus::Verified)
            }
            (OrgStatus::Pending | OrgStatus::Verified, OrgAction::Disable) => {
                Ok(OrgStatus::Disabled)
            }
            _ => Err(Refusal::new("accounts.err_transition")),
        }
    }
}

crate::stored_state!(OrgStatus);

/// The life cycle of a user account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// May log in.
    Active,
    /// May not log in; sessions and tokens revoked.
    Disabled,
}

/// A change of a user's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    /// Re-enable.
    Enable,
    /// Disable.
    Disable,
}

impl UserStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }
}

impl Machine for UserStatus {
    type Action = UserAction;
    const KIND: &'static str = "user";
    const ALL: &'static [Self] = &[UserStatus::Active, UserStatus::Disabled];

    fn code(self) -> &'static str {
        self.as_str()
    }

    fn decide(self, action: UserAction) -> Result<UserStatus, Refusal> {
        match (self, action) {
            (UserStatus::Active, UserAction::Disable) => Ok(UserStatus::Disabled),
            (UserStatus::Disabled, UserAction::Enable) => Ok(UserStatus::Active),
            _ => Err(Refusal::new("accounts.err_transition")),
        }
    }
}

crate::stored_state!(UserStatus);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::table;

    #[test]
    fn every_organisation_transition() {
        use OrgAction as A;
        use OrgStatus as S;
        let legal: Vec<_> = table::<S>(&[A::Verify, A::Disable])
            .into_iter()
            .filter_map(|(s, a, to)| to.ok().map(|to| (s, a, to)))
            .collect();
        assert_eq!(
            legal,
            [
                (S::Pending, A::Verify, S::Verified),
                (S::Pending, A::Disable, S::Disabled),
                (S::Verified, A::Disable, S::Disabled),
                (S::Disabled, A::Verify, S::Verified),
            ]
        );
    }

    #[test]
    fn every_user_transition() {
        use UserAction as A;
        use UserStatus as S;
        for (s, a, to) in table::<S>(&[A::Enable, A::Disable]) {
            let want = match (s, a) {
                (S::Active, A::Disable) => Ok(S::Disabled),
                (S::Disabled, A::Enable) => Ok(S::Active),
                _ => Err(Refusal::new("accounts.err_transition")),
            };
            assert_eq!(to, want, "{s:?} {a:?}");
        }
        assert_eq!(S::parse("active"), Ok(S::Active));
        assert!(S::parse("locked").is_err());
    }
}
