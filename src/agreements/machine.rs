//! The three workflows of this module as explicit state machines: the agreement, the
//! rectification order and the operator's termination request. Each has one function deciding
//! every transition; a refusal names why (a message key) and changes nothing.
//!
//! Agreement:
//!
//! ```text
//! draft --submit--> awaiting_operator --operator_sign--> awaiting_seal --seal--> in_force
//! draft --edit--> draft
//! awaiting_operator --operator_return--> draft   (the operator asks for changes)
//! in_force --order_rectification--> rectification --rectification_accepted--> in_force
//! in_force | rectification --end(expired | terminated_on_request | terminated_for_violation)--> ended
//! rectification --end(terminated_for_breach)--> ended
//! in_force --supersede--> superseded            (a sealed amendment replaces it)
//! ```
//!
//! The rectification sub-state is part of the term: the agreement still runs (and its datasets
//! stay accessible) while the operator corrects the breach.

use serde::Serialize;

use crate::workflow::{Machine, Refusal};

/// Why an agreement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// (a) The term expired.
    Expired,
    /// (b) Ended early on the operator's request.
    TerminatedOnRequest,
    /// (c) A rectification order was not complied with.
    TerminatedForBreach,
    /// (d) Ended at once for a violation of law.
    TerminatedForViolation,
}

impl EndReason {
    /// Every reason.
    pub const ALL: [EndReason; 4] = [
        EndReason::Expired,
        EndReason::TerminatedOnRequest,
        EndReason::TerminatedForBreach,
        EndReason::TerminatedForViolation,
    ];

    /// The stored code (also the agreement's state).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::TerminatedOnRequest => "terminated_on_request",
            EndReason::TerminatedForBreach => "terminated_for_breach",
            EndReason::TerminatedForViolation => "terminated_for_violation",
        }
    }
}

/// The state of an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AgreementState {
    /// Being drafted by the regulator; editable.
    Draft,
    /// Sent to the operator to review and sign.
    AwaitingOperator,
    /// Signed by the operator; waiting for the regulator's seal.
    AwaitingSeal,
    /// Sealed; the term runs.
    InForce,
    /// In force, under a rectification order.
    Rectification,
    /// Ended, for the given reason.
    Ended(EndReason),
    /// Replaced by a sealed amendment.
    Superseded,
}

impl AgreementState {
    /// Every state.
    pub const ALL: [AgreementState; 10] = [
        AgreementState::Draft,
        AgreementState::AwaitingOperator,
        AgreementState::AwaitingSeal,
        AgreementState::InForce,
        AgreementState::Rectification,
        AgreementState::Ended(EndReason::Expired),
        AgreementState::Ended(EndReason::TerminatedOnRequest),
        AgreementState::Ended(EndReason::TerminatedForBreach),
        AgreementState::Ended(EndReason::TerminatedForViolation),
        AgreementState::Superseded,
    ];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementState::Draft => "draft",
            AgreementState::AwaitingOperator => "awaiting_operator",
            AgreementState::AwaitingSeal => "awaiting_seal",
            AgreementState::InForce => "in_force",
            AgreementState::Rectification => "rectification",
            AgreementState::Ended(r) => r.as_str(),
            AgreementState::Superseded => "superseded",
        }
    }

    /// The message key of the state's label.
    pub fn label_key(self) -> String {
        format!("agreements.state.{}", self.as_str())
    }

    /// Whether the term runs (in force, possibly under a rectification order).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            AgreementState::InForce | AgreementState::Rectification
        )
    }

    /// Whether the agreement has been signed by the operator (and can no longer be edited).
    pub fn is_signed(self) -> bool {
        !matches!(
            self,
            AgreementState::Draft | AgreementState::AwaitingOperator
        )
    }
}

/// The stored codes of the running states (for queries).
pub const RUNNING: [&str; 2] = ["in_force", "rectification"];

/// The predicate "`agreements.state` is one of [`RUNNING`]".
pub type StateRunning = diesel::dsl::Or<
    diesel::dsl::Eq<crate::schema::agreements::state, &'static str>,
    diesel::dsl::Eq<crate::schema::agreements::state, &'static str>,
>;

/// "`agreements.state` is one of [`RUNNING`]" as two equalities rather than `IN (…)`: diesel
/// keeps a statement with a fixed shape prepared, while one with a bound list is prepared
/// again on every call (the checks on the job path run it several times per run).
pub fn state_running() -> StateRunning {
    use diesel::{BoolExpressionMethods as _, ExpressionMethods as _};
    let state = crate::schema::agreements::state;
    state.eq(RUNNING[0]).or(state.eq(RUNNING[1]))
}

/// What can happen to an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgreementAction {
    /// The regulator changes the draft.
    Edit,
    /// The regulator sends the draft to the operator.
    Submit,
    /// The operator signs.
    OperatorSign,
    /// The operator returns the draft to the regulator, asking for changes.
    OperatorReturn,
    /// The regulator seals with the authorization seal; the term starts.
    Seal,
    /// The regulator orders rectification.
    OrderRectification,
    /// The regulator accepts the operator's rectification.
    RectificationAccepted,
    /// The agreement ends.
    End(EndReason),
    /// A sealed amendment replaces it.
    Supersede,
}

impl Machine for AgreementState {
    type Action = AgreementAction;
    const KIND: &'static str = "agreement";
    const ALL: &'static [Self] = &AgreementState::ALL;

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of agreements.
    fn decide(self, action: AgreementAction) -> Result<AgreementState, Refusal> {
        use AgreementAction as A;
        use AgreementState as S;
        match (self, action) {
            (S::Draft, A::Edit) => Ok(S::Draft),
            (S::Draft, A::Submit) => Ok(S::AwaitingOperator),
            (S::AwaitingOperator, A::OperatorSign) => Ok(S::AwaitingSeal),
            (S::AwaitingOperator, A::OperatorReturn) => Ok(S::Draft),
            (S::AwaitingSeal, A::Seal) => Ok(S::InForce),
            (S::InForce, A::OrderRectification) => Ok(S::Rectification),
            (S::Rectification, A::RectificationAccepted) => Ok(S::InForce),
            (S::Rectification, A::End(EndReason::TerminatedForBreach)) => {
                Ok(S::Ended(EndReason::TerminatedForBreach))
            }
            (S::InForce, A::End(EndReason::TerminatedForBreach)) => {
                Err(Refusal::new("agreements.refuse.breach_needs_order"))
            }
            (S::InForce | S::Rectification, A::End(r)) => Ok(S::Ended(r)),
            (S::InForce, A::Supersede) => Ok(S::Superseded),
            (_, A::Edit) => Err(Refusal::new("agreements.refuse.not_editable")),
            (S::Ended(_) | S::Superseded, _) => Err(Refusal::new("agreements.refuse.ended")),
            (S::Rectification, A::OrderRectification) => {
                Err(Refusal::new("agreements.refuse.rectification_open"))
            }
            (S::Rectification, A::Supersede) => {
                Err(Refusal::new("agreements.refuse.rectification_open"))
            }
            (S::Draft | S::AwaitingOperator | S::AwaitingSeal, _) => {
                Err(Refusal::new("agreements.refuse.not_in_force"))
            }
            (S::InForce | S::Rectification, _) => {
                Err(Refusal::new("agreements.refuse.already_signed"))
            }
        }
    }
}

crate::stored_state!(AgreementState);

/// The state of a rectification order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RectificationState {
    /// Issued; the operator must answer by the deadline.
    Ordered,
    /// The operator answered; the regulator decides.
    Answered,
    /// The regulator accepted the answer; the agreement is back in force.
    Accepted,
    /// The regulator rejected the answer; the agreement was terminated.
    Rejected,
    /// The deadline passed unanswered; the agreement was terminated.
    Lapsed,
    /// Closed undecided because the agreement ended by another route.
    Closed,
}

impl RectificationState {
    /// Every state.
    pub const ALL: [RectificationState; 6] = [
        RectificationState::Ordered,
        RectificationState::Answered,
        RectificationState::Accepted,
        RectificationState::Rejected,
        RectificationState::Lapsed,
        RectificationState::Closed,
    ];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            RectificationState::Ordered => "ordered",
            RectificationState::Answered => "answered",
            RectificationState::Accepted => "accepted",
            RectificationState::Rejected => "rejected",
            RectificationState::Lapsed => "lapsed",
            RectificationState::Closed => "closed",
        }
    }

    /// The message key of the state's label.
    pub fn label_key(self) -> String {
        format!("agreements.rect_state.{}", self.as_str())
    }
}

/// What can happen to a rectification order. `overdue` is whether its deadline has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RectificationAction {
    /// The operator answers with what it changed (only before the deadline passes).
    Answer {
        /// Whether the deadline has passed.
        overdue: bool,
    },
    /// The regulator accepts the answer.
    Accept,
    /// The regulator rejects the answer (the agreement is terminated).
    Reject,
    /// The regulator terminates because the deadline passed unanswered.
    TerminateUnanswered {
        /// Whether the deadline has passed.
        overdue: bool,
    },
    /// The agreement ended by another route while the order was open.
    Close,
}

impl Machine for RectificationState {
    type Action = RectificationAction;
    const KIND: &'static str = "rectification";
    const ALL: &'static [Self] = &RectificationState::ALL;

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of rectification orders.
    fn decide(self, action: RectificationAction) -> Result<RectificationState, Refusal> {
        use RectificationAction as A;
        use RectificationState as S;
        match (self, action) {
            (S::Ordered, A::Answer { overdue: false }) => Ok(S::Answered),
            (S::Ordered, A::Answer { overdue: true }) => {
                Err(Refusal::new("agreements.refuse.rect_deadline_passed"))
            }
            (S::Ordered, A::TerminateUnanswered { overdue: true }) => Ok(S::Lapsed),
            (S::Ordered, A::TerminateUnanswered { overdue: false }) => {
                Err(Refusal::new("agreements.refuse.rect_not_overdue"))
            }
            (S::Ordered, A::Accept | A::Reject) => {
                Err(Refusal::new("agreements.refuse.rect_unanswered"))
            }
            (S::Ordered | S::Answered, A::Close) => Ok(S::Closed),
            (S::Answered, A::Accept) => Ok(S::Accepted),
            (S::Answered, A::Reject) => Ok(S::Rejected),
            (S::Answered, A::Answer { .. } | A::TerminateUnanswered { .. }) => {
                Err(Refusal::new("agreements.refuse.rect_answered"))
            }
            (S::Accepted | S::Rejected | S::Lapsed | S::Closed, _) => {
                Err(Refusal::new("agreements.refuse.rect_closed"))
            }
        }
    }
}

crate::stored_state!(RectificationState);

/// The state of an operator's request to end its agreement early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RequestState {
    /// Waiting for the regulator.
    Pending,
    /// Approved: the agreement ended.
    Approved,
    /// Refused: the agreement continues.
    Refused,
    /// Closed undecided because the agreement ended by another route.
    Closed,
}

impl RequestState {
    /// Every state.
    pub const ALL: [RequestState; 4] = [
        RequestState::Pending,
        RequestState::Approved,
        RequestState::Refused,
        RequestState::Closed,
    ];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Refused => "refused",
            RequestState::Closed => "closed",
        }
    }

    /// The message key of the state's label.
    pub fn label_key(self) -> String {
        format!("agreements.req_state.{}", self.as_str())
    }
}

/// What the regulator decides on a termination request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAction {
    /// End the agreement as asked.
    Approve,
    /// Keep the agreement.
    Refuse,
    /// The agreement ended by another route while the request was pending.
    Close,
}

impl Machine for RequestState {
    type Action = RequestAction;
    const KIND: &'static str = "termination_request";
    const ALL: &'static [Self] = &RequestState::ALL;

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of termination requests.
    fn decide(self, action: RequestAction) -> Result<RequestState, Refusal> {
        match (self, action) {
            (RequestState::Pending, RequestAction::Approve) => Ok(RequestState::Approved),
            (RequestState::Pending, RequestAction::Refuse) => Ok(RequestState::Refused),
            (RequestState::Pending, RequestAction::Close) => Ok(RequestState::Closed),
            (RequestState::Approved | RequestState::Refused | RequestState::Closed, _) => {
                Err(Refusal::new("agreements.refuse.request_decided"))
            }
        }
    }
}

crate::stored_state!(RequestState);

#[cfg(test)]
mod tests {
    use super::*;
    use AgreementAction as A;
    use AgreementState as S;

    const ACTIONS: [AgreementAction; 12] = [
        A::Edit,
        A::Submit,
        A::OperatorSign,
        A::OperatorReturn,
        A::Seal,
        A::OrderRectification,
        A::RectificationAccepted,
        A::End(EndReason::Expired),
        A::End(EndReason::TerminatedOnRequest),
        A::End(EndReason::TerminatedForBreach),
        A::End(EndReason::TerminatedForViolation),
        A::Supersede,
    ];

    fn legal(s: AgreementState, a: AgreementAction) -> Option<AgreementState> {
        let ended = |r| Some(S::Ended(r));
        match (s, a) {
            (S::Draft, A::Edit) => Some(S::Draft),
            (S::Draft, A::Submit) => Some(S::AwaitingOperator),
            (S::AwaitingOperator, A::OperatorSign) => Some(S::AwaitingSeal),
            (S::AwaitingOperator, A::OperatorReturn) => Some(S::Draft),
            (S::AwaitingSeal, A::Seal) => Some(S::InForce),
            (S::InForce, A::OrderRectification) => Some(S::Rectification),
            (S::Rectification, A::RectificationAccepted) => Some(S::InForce),
            (S::InForce, A::Supersede) => Some(S::Superseded),
            (S::InForce, A::End(EndReason::TerminatedForBreach)) => None,
            (S::InForce | S::Rectification, A::End(r)) => ended(r),
            _ => None,
        }
    }

    #[test]
    fn every_agreement_transition_is_decided_as_documented() {
        let mut legal_count = 0;
        for s in S::ALL {
            for a in ACTIONS {
                match (s.decide(a), legal(s, a)) {
                    (Ok(got), Some(want)) => {
                        assert_eq!(got, want, "{s:?} {a:?}");
                        legal_count += 1;
                    }
                    (Err(Refusal { key, .. }), None) => {
                        assert!(key.starts_with("agreements.refuse."), "{s:?} {a:?}");
                    }
                    (got, want) => panic!("{s:?} {a:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(legal_count, 15);
    }

    #[test]
    fn signed_agreements_cannot_be_edited() {
        for s in [S::AwaitingSeal, S::InForce, S::Rectification, S::Superseded] {
            assert!(s.is_signed());
            assert!(s.decide(A::Edit).is_err());
        }
        assert_eq!(
            S::InForce.decide(A::Edit),
            Err(Refusal::new("agreements.refuse.not_editable"))
        );
        assert_eq!(
            S::InForce.decide(A::End(EndReason::TerminatedForBreach)),
            Err(Refusal::new("agreements.refuse.breach_needs_order"))
        );
    }

    #[test]
    fn states_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Ok(s));
        }
        for s in RectificationState::ALL {
            assert_eq!(RectificationState::parse(s.as_str()), Ok(s));
        }
        for s in RequestState::ALL {
            assert_eq!(RequestState::parse(s.as_str()), Ok(s));
        }
        assert!(S::parse("nonsense").is_err());
        assert!(S::InForce.is_running() && S::Rectification.is_running());
        assert!(!S::AwaitingSeal.is_running());
    }

    #[test]
    fn every_rectification_transition() {
        use RectificationAction as RA;
        use RectificationState as RS;
        let actions = [
            RA::Answer { overdue: false },
            RA::Answer { overdue: true },
            RA::Accept,
            RA::Reject,
            RA::TerminateUnanswered { overdue: false },
            RA::TerminateUnanswered { overdue: true },
            RA::Close,
        ];
        for s in RS::ALL {
            for a in actions {
                let want = match (s, a) {
                    (RS::Ordered, RA::Answer { overdue: false }) => Some(RS::Answered),
                    (RS::Ordered, RA::TerminateUnanswered { overdue: true }) => Some(RS::Lapsed),
                    (RS::Answered, RA::Accept) => Some(RS::Accepted),
                    (RS::Answered, RA::Reject) => Some(RS::Rejected),
                    (RS::Ordered | RS::Answered, RA::Close) => Some(RS::Closed),
                    _ => None,
                };
                match (s.decide(a), want) {
                    (Ok(got), Some(w)) => assert_eq!(got, w),
                    (Err(_), None) => {}
                    (got, w) => panic!("{s:?} {a:?}: got {got:?}, want {w:?}"),
                }
            }
        }
        assert_eq!(
            RS::Ordered.decide(RA::Answer { overdue: true }),
            Err(Refusal::new("agreements.refuse.rect_deadline_passed"))
        );
        assert_eq!(
            RS::Ordered.decide(RA::TerminateUnanswered { overdue: false }),
            Err(Refusal::new("agreements.refuse.rect_not_overdue"))
        );
    }

    #[test]
    fn every_request_transition() {
        use RequestAction as QA;
        use RequestState as QS;
        assert_eq!(QS::Pending.decide(QA::Approve), Ok(QS::Approved));
        assert_eq!(QS::Pending.decide(QA::Refuse), Ok(QS::Refused));
        assert_eq!(QS::Pending.decide(QA::Close), Ok(QS::Closed));
        for s in [QS::Approved, QS::Refused, QS::Closed] {
            for a in [QA::Approve, QA::Refuse, QA::Close] {
                assert_eq!(
                    s.decide(a),
                    Err(Refusal::new("agreements.refuse.request_decided"))
                );
            }
        }
    }
}
