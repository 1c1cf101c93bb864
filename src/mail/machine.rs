//! The outbox message's workflow on the workflow kernel ([`crate::workflow`]).
//!
//! ```text
//! pending --delivered--> sent
//! pending --attempt_failed(n < MAX_ATTEMPTS)--> pending   (the next attempt backed off)
//! pending --attempt_failed(n = MAX_ATTEMPTS)--> failed
//! failed --retry--> pending                               (an administrator asks again)
//! ```

use crate::workflow::{Machine, Refusal};

/// Attempts before a message is given up (`failed`).
pub const MAX_ATTEMPTS: i32 = 5;

/// The state of an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    /// Waiting for a (further) delivery attempt.
    Pending,
    /// Delivered, or written to the file outbox.
    Sent,
    /// Given up after the last attempt.
    Failed,
}

/// What happens to an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailAction {
    /// The server accepted it (or the file was written).
    Delivered,
    /// An attempt failed; `attempts` is the number made so far, this one included.
    AttemptFailed {
        /// Attempts made, including the failed one.
        attempts: i32,
    },
    /// An administrator asks for one more attempt.
    Retry,
}

impl MailState {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            MailState::Pending => "pending",
            MailState::Sent => "sent",
            MailState::Failed => "failed",
        }
    }

    /// The message key of the state's name.
    pub fn label_key(self) -> &'static str {
        match self {
            MailState::Pending => "mail.state_pending",
            MailState::Sent => "mail.state_sent",
            MailState::Failed => "mail.state_failed",
        }
    }
}

impl Machine for MailState {
    type Action = MailAction;
    const KIND: &'static str = "mail";
    const ALL: &'static [Self] = &[MailState::Pending, MailState::Sent, MailState::Failed];

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of the outbox.
    fn decide(self, action: MailAction) -> Result<MailState, Refusal> {
        match (self, action) {
            (MailState::Pending, MailAction::Delivered) => Ok(MailState::Sent),
            (MailState::Pending, MailAction::AttemptFailed { attempts }) => {
                Ok(if attempts >= MAX_ATTEMPTS {
                    MailState::Failed
                } else {
                    MailState::Pending
                })
            }
            (MailState::Failed, MailAction::Retry) => Ok(MailState::Pending),
            (MailState::Sent, _) => Err(Refusal::new("mail.err_already_sent")),
            (MailState::Pending, MailAction::Retry) => Err(Refusal::new("mail.err_retry_pending")),
            (MailState::Failed, MailAction::Delivered | MailAction::AttemptFailed { .. }) => {
                Err(Refusal::new("mail.err_not_pending"))
            }
        }
    }
}

crate::stored_state!(MailState);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::table;
    use MailAction as A;
    use MailState as S;

    #[test]
    fn every_outbox_transition_is_decided_as_documented() {
        let actions = [
            A::Delivered,
            A::AttemptFailed { attempts: 1 },
            A::AttemptFailed {
                attempts: MAX_ATTEMPTS - 1,
            },
            A::AttemptFailed {
                attempts: MAX_ATTEMPTS,
            },
            A::Retry,
        ];
        let legal = |s: S, a: A| match (s, a) {
            (S::Pending, A::Delivered) => Some(S::Sent),
            (S::Pending, A::AttemptFailed { attempts }) if attempts < MAX_ATTEMPTS => {
                Some(S::Pending)
            }
            (S::Pending, A::AttemptFailed { .. }) => Some(S::Failed),
            (S::Failed, A::Retry) => Some(S::Pending),
            _ => None,
        };
        let mut seen = 0;
        for (s, a, got) in table::<S>(&actions) {
            match (got, legal(s, a)) {
                (Ok(to), Some(want)) => {
                    assert_eq!(to, want, "{s:?} {a:?}");
                    seen += 1;
                }
                (Err(Refusal { key, .. }), None) => {
                    assert!(key.starts_with("mail.err_"), "{s:?} {a:?}: {key}");
                }
                (got, want) => panic!("{s:?} {a:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(seen, 5);
    }

    #[test]
    fn failures_stay_pending_until_the_last_attempt() {
        for attempts in 1..MAX_ATTEMPTS {
            assert_eq!(
                S::Pending.decide(A::AttemptFailed { attempts }),
                Ok(S::Pending)
            );
        }
        assert_eq!(
            S::Pending.decide(A::AttemptFailed {
                attempts: MAX_ATTEMPTS
            }),
            Ok(S::Failed)
        );
    }

    #[test]
    fn only_failed_messages_are_retried() {
        assert_eq!(S::Failed.decide(A::Retry), Ok(S::Pending));
        assert_eq!(
            S::Pending.decide(A::Retry),
            Err(Refusal::new("mail.err_retry_pending"))
        );
        assert_eq!(
            S::Sent.decide(A::Retry),
            Err(Refusal::new("mail.err_already_sent"))
        );
    }

    #[test]
    fn sent_and_failed_take_no_delivery_outcome() {
        for action in [A::Delivered, A::AttemptFailed { attempts: 1 }] {
            assert!(S::Sent.decide(action).is_err());
            assert_eq!(
                S::Failed.decide(action),
                Err(Refusal::new("mail.err_not_pending"))
            );
        }
    }

    #[test]
    fn states_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert!(S::parse("sending").is_err());
    }
}
