//! The two workflows of computation jobs, each with one transition function.
//!
//! * A **computation** (an operator's module pinned by hash with its manifest) is `pending`
//!   until the reviewer approves or rejects it. An approved computation runs again without
//!   new approval until the reviewer revokes the approval (with reasons): its queued and
//!   running runs are then cancelled, and submitting the same module again needs a new
//!   approval.
//! * A **run** (a row of `jobs`) is `awaiting_approval` while its computation is pending, then
//!   `queued` → `running` → `finished` → `released` or `withheld`; it may end `failed`,
//!   `cancelled` (by the operator or the reviewer, or because its agreement ended before it ran)
//!   or `refused` (its computation was rejected). A finished run whose agreement ended before
//!   the release is `withheld`.

use serde::Serialize;

use crate::workflow::{Machine, Refusal};

/// The state of a computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputationState {
    /// Waiting for the reviewer.
    Pending,
    /// Approved: its runs are queued without further approval.
    Approved,
    /// Rejected with reasons.
    Rejected,
    /// Approved once; the approval was revoked with reasons.
    Revoked,
}

impl ComputationState {
    /// Every state.
    pub const ALL: [ComputationState; 4] =
        [Self::Pending, Self::Approved, Self::Rejected, Self::Revoked];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Revoked => "revoked",
        }
    }

    /// The message key of its label.
    pub fn label_key(self) -> String {
        format!("jobs.cstate.{}", self.as_str())
    }
}

/// What the reviewer does with a computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputationAction {
    /// Approve it.
    Approve,
    /// Reject it with reasons.
    Reject,
    /// Revoke its approval with reasons.
    Revoke,
}

impl Machine for ComputationState {
    type Action = ComputationAction;
    const KIND: &'static str = "computation";
    const ALL: &'static [Self] = &Self::ALL;

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of computations.
    fn decide(self, action: ComputationAction) -> Result<ComputationState, Refusal> {
        use ComputationAction as A;
        use ComputationState as S;
        match (self, action) {
            (S::Pending, A::Approve) => Ok(S::Approved),
            (S::Pending, A::Reject) => Ok(S::Rejected),
            (S::Approved, A::Revoke) => Ok(S::Revoked),
            (S::Pending, A::Revoke) => Err(Refusal::new("jobs.refuse.not_approved")),
            (S::Approved | S::Rejected | S::Revoked, _) => {
                Err(Refusal::new("jobs.refuse.computation_decided"))
            }
        }
    }
}

crate::stored_state!(ComputationState);

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Its computation waits for approval.
    AwaitingApproval,
    /// Waiting for a worker.
    Queued,
    /// A worker holds its lease and runs it.
    Running,
    /// Ran to completion; the output waits for the reviewer.
    Finished,
    /// The output was released to the operator.
    Released,
    /// The output was withheld (by the reviewer, or because the agreement ended).
    Withheld,
    /// The run did not finish (the sandbox's outcome says why).
    Failed,
    /// Cancelled before it ended.
    Cancelled,
    /// Its computation was rejected.
    Refused,
}

impl RunState {
    /// Every state.
    pub const ALL: [RunState; 9] = [
        Self::AwaitingApproval,
        Self::Queued,
        Self::Running,
        Self::Finished,
        Self::Released,
        Self::Withheld,
        Self::Failed,
        Self::Cancelled,
        Self::Refused,
    ];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingApproval => "awaiting_approval",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Released => "released",
            Self::Withheld => "withheld",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Refused => "refused",
        }
    }

    /// The message key of its label.
    pub fn label_key(self) -> String {
        format!("jobs.state.{}", self.as_str())
    }

    /// Whether nothing more can happen to the run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Released | Self::Withheld | Self::Failed | Self::Cancelled | Self::Refused
        )
    }

    /// The CSS badge class of the state.
    pub fn badge(self) -> &'static str {
        match self {
            Self::Released => "badge-ok",
            Self::AwaitingApproval | Self::Queued | Self::Running | Self::Finished => {
                "badge-pending"
            }
            Self::Withheld | Self::Failed | Self::Cancelled | Self::Refused => "badge-disabled",
        }
    }
}

/// What can happen to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    /// Its computation was approved (or was approved already at submission).
    Approve,
    /// Its computation was rejected.
    Reject,
    /// A worker claims it (a queued run, or a running one whose lease expired).
    Claim,
    /// The sandbox finished it.
    Finish,
    /// The sandbox did not finish it, or a check at start failed.
    Fail,
    /// The reviewer releases the output.
    Release,
    /// The reviewer withholds the output.
    Withhold,
    /// Its agreement ended before it ran or before its output was released.
    AgreementEnded,
    /// The operator or the reviewer cancels it.
    Cancel,
}

impl Machine for RunState {
    type Action = RunAction;
    const KIND: &'static str = "job";
    const ALL: &'static [Self] = &Self::ALL;

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of runs.
    fn decide(self, action: RunAction) -> Result<RunState, Refusal> {
        use RunAction as A;
        use RunState as S;
        let refuse = |key| Err(Refusal::new(key));
        match (self, action) {
            (S::AwaitingApproval, A::Approve) => Ok(S::Queued),
            (S::AwaitingApproval, A::Reject) => Ok(S::Refused),
            (S::Queued | S::Running, A::Claim) => Ok(S::Running),
            (S::Running, A::Finish) => Ok(S::Finished),
            (S::Running, A::Fail) => Ok(S::Failed),
            (S::Finished, A::Release) => Ok(S::Released),
            (S::Finished, A::Withhold | A::AgreementEnded) => Ok(S::Withheld),
            (S::AwaitingApproval | S::Queued | S::Running, A::AgreementEnded) => Ok(S::Cancelled),
            (S::AwaitingApproval | S::Queued | S::Running | S::Finished, A::Cancel) => {
                Ok(S::Cancelled)
            }
            (s, _) if s.is_final() => refuse("jobs.refuse.ended"),
            (S::AwaitingApproval, _) => refuse("jobs.refuse.awaiting_approval"),
            (_, A::Approve | A::Reject) => refuse("jobs.refuse.already_approved"),
            (S::Finished, _) => refuse("jobs.refuse.already_ran"),
            (S::Queued, _) => refuse("jobs.refuse.not_started"),
            (_, A::Release | A::Withhold) => refuse("jobs.refuse.not_finished"),
            (_, _) => refuse("jobs.refuse.running"),
        }
    }
}

crate::stored_state!(RunState);

#[cfg(test)]
mod tests {
    use super::*;

    use ComputationAction as CA;
    use ComputationState as CS;
    use RunAction as A;
    use RunState as S;

    const ACTIONS: [RunAction; 9] = [
        A::Approve,
        A::Reject,
        A::Claim,
        A::Finish,
        A::Fail,
        A::Release,
        A::Withhold,
        A::AgreementEnded,
        A::Cancel,
    ];

    /// The table of legal run transitions, written independently of [`Machine::decide`].
    fn legal(s: RunState, a: RunAction) -> Option<RunState> {
        Some(match (s, a) {
            (S::AwaitingApproval, A::Approve) => S::Queued,
            (S::AwaitingApproval, A::Reject) => S::Refused,
            (S::AwaitingApproval, A::AgreementEnded) => S::Cancelled,
            (S::AwaitingApproval, A::Cancel) => S::Cancelled,
            (S::Queued, A::Claim) => S::Running,
            (S::Queued, A::AgreementEnded) => S::Cancelled,
            (S::Queued, A::Cancel) => S::Cancelled,
            (S::Running, A::Claim) => S::Running,
            (S::Running, A::Finish) => S::Finished,
            (S::Running, A::Fail) => S::Failed,
            (S::Running, A::AgreementEnded) => S::Cancelled,
            (S::Running, A::Cancel) => S::Cancelled,
            (S::Finished, A::Release) => S::Released,
            (S::Finished, A::Withhold) => S::Withheld,
            (S::Finished, A::AgreementEnded) => S::Withheld,
            (S::Finished, A::Cancel) => S::Cancelled,
            _ => return None,
        })
    }

    #[test]
    fn every_run_transition() {
        let mut legal_count = 0;
        for s in S::ALL {
            for a in ACTIONS {
                match (s.decide(a), legal(s, a)) {
                    (Ok(got), Some(want)) => {
                        assert_eq!(got, want, "{s:?} {a:?}");
                        legal_count += 1;
                    }
                    (Err(r), None) => {
                        assert!(r.key.starts_with("jobs.refuse."), "{s:?} {a:?}");
                    }
                    (got, want) => panic!("{s:?} {a:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(legal_count, 16);
    }

    #[test]
    fn final_states_refuse_everything() {
        for s in S::ALL.into_iter().filter(|s| s.is_final()) {
            for a in ACTIONS {
                assert_eq!(s.decide(a), Err(Refusal::new("jobs.refuse.ended")));
            }
        }
        assert_eq!(
            S::Queued.decide(A::Release),
            Err(Refusal::new("jobs.refuse.not_started"))
        );
        assert_eq!(
            S::Running.decide(A::Release),
            Err(Refusal::new("jobs.refuse.not_finished"))
        );
        assert_eq!(
            S::Finished.decide(A::Claim),
            Err(Refusal::new("jobs.refuse.already_ran"))
        );
    }

    #[test]
    fn every_computation_transition() {
        let mut legal_count = 0;
        for s in CS::ALL {
            for a in [CA::Approve, CA::Reject, CA::Revoke] {
                let want = match (s, a) {
                    (CS::Pending, CA::Approve) => Some(CS::Approved),
                    (CS::Pending, CA::Reject) => Some(CS::Rejected),
                    (CS::Approved, CA::Revoke) => Some(CS::Revoked),
                    _ => None,
                };
                let why = if (s, a) == (CS::Pending, CA::Revoke) {
                    "jobs.refuse.not_approved"
                } else {
                    "jobs.refuse.computation_decided"
                };
                match (s.decide(a), want) {
                    (Ok(got), Some(w)) => {
                        assert_eq!(got, w);
                        legal_count += 1;
                    }
                    (Err(r), None) => assert_eq!(r, Refusal::new(why), "{s:?} {a:?}"),
                    (got, w) => panic!("{s:?} {a:?}: got {got:?}, want {w:?}"),
                }
            }
        }
        assert_eq!(legal_count, 3);
    }

    #[test]
    fn states_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Ok(s));
        }
        for s in CS::ALL {
            assert_eq!(CS::parse(s.as_str()), Ok(s));
        }
        assert!(S::parse("nonsense").is_err());
        assert!(CS::parse("").is_err());
    }
}
