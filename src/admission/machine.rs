//! The admission workflows on the workflow kernel ([`crate::workflow`]): a call, an
//! application, an expert assignment and an objection. Each state enum is a [`Machine`] whose
//! one function [`Machine::decide`] says where each action leads or why it is refused (a
//! [`Refusal`] with its message key, shown with the HTTP 409).
//!
//! ```text
//! call:        draft --edit--> draft --publish--> published --close--> closed
//!              draft | published --withdraw--> withdrawn
//! application: draft | returned --save--> (same)        draft | returned --submit--> submitted
//!              submitted | in_review --return--> returned
//!              submitted | in_review --assign_expert--> in_review
//!              submitted | in_review --approve--> notice --admit--> admitted
//!              submitted | in_review --reject--> rejected
//!              notice --uphold_objection--> in_review
//! assignment:  assigned --file--> filed
//! objection:   pending --dismiss--> dismissed          pending --uphold--> upheld
//! ```
//!
//! `admitted` is the contract with the agreements: an agreement may be drafted exactly for
//! applications in that state.

use crate::workflow::{Machine, Refusal};

/// The life of a call for applications (发布通告).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    /// Being written by the regulator; not public.
    Draft,
    /// Public; takes applications between its opening and closing dates.
    Published,
    /// Past its closing date or closed by the regulator.
    Closed,
    /// Withdrawn by the regulator.
    Withdrawn,
}

/// What the regulator (or the calendar) does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAction {
    /// Change the text, dates or datasets.
    Edit,
    /// Make it public.
    Publish,
    /// Stop taking applications (by hand or when the closing date has passed).
    Close,
    /// Take it back.
    Withdraw,
}

impl CallAction {
    /// The action a route segment (`/admission/calls/{id}/{segment}`) names.
    pub fn from_segment(segment: &str) -> Option<CallAction> {
        match segment {
            "publish" => Some(CallAction::Publish),
            "close" => Some(CallAction::Close),
            "withdraw" => Some(CallAction::Withdraw),
            _ => None,
        }
    }

    /// The verb of the action's audit entry (`call.<verb>`).
    pub fn verb(self) -> &'static str {
        match self {
            CallAction::Edit => "update",
            CallAction::Publish => "publish",
            CallAction::Close => "close",
            CallAction::Withdraw => "withdraw",
        }
    }
}

impl CallState {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Draft => "draft",
            CallState::Published => "published",
            CallState::Closed => "closed",
            CallState::Withdrawn => "withdrawn",
        }
    }

    /// The message key of the state's label.
    pub fn label_key(self) -> &'static str {
        match self {
            CallState::Draft => "admission.call_state.draft",
            CallState::Published => "admission.call_state.published",
            CallState::Closed => "admission.call_state.closed",
            CallState::Withdrawn => "admission.call_state.withdrawn",
        }
    }

    /// Whether the public may see a call in this state.
    pub fn is_public(self) -> bool {
        matches!(self, CallState::Published | CallState::Closed)
    }
}

impl Machine for CallState {
    type Action = CallAction;
    const KIND: &'static str = "call";
    const ALL: &'static [Self] = &[
        CallState::Draft,
        CallState::Published,
        CallState::Closed,
        CallState::Withdrawn,
    ];

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of a call.
    fn decide(self, action: CallAction) -> Result<CallState, Refusal> {
        use CallAction as A;
        use CallState as S;
        match (self, action) {
            (S::Draft, A::Edit) => Ok(S::Draft),
            (S::Draft, A::Publish) => Ok(S::Published),
            (S::Published, A::Close) => Ok(S::Closed),
            (S::Draft | S::Published, A::Withdraw) => Ok(S::Withdrawn),
            (_, A::Edit | A::Publish) => Err(Refusal::new("admission.err_call_not_draft")),
            (_, A::Close) => Err(Refusal::new("admission.err_call_not_published")),
            (_, A::Withdraw) => Err(Refusal::new("admission.err_call_finished")),
        }
    }
}

crate::stored_state!(CallState);

/// The life of an application (提交申请 → 审核申请 → 公开结果).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplicationState {
    /// Being written by the enterprise.
    Draft,
    /// Submitted; waiting for the regulator's completeness check.
    Submitted,
    /// Returned to the enterprise for supplement.
    Returned,
    /// Under review: experts assigned or an upheld objection sent it back.
    InReview,
    /// Approved and published on the notice page; objections may be filed.
    Notice,
    /// Rejected, with reasons.
    Rejected,
    /// Notice period over with no objection pending or upheld: an agreement may be drafted.
    Admitted,
}

/// What happens to an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationAction {
    /// The enterprise saves its draft (or its returned application), or changes its
    /// attachments.
    Save,
    /// The enterprise submits (or resubmits after a return).
    Submit,
    /// The regulator returns it for supplement.
    Return,
    /// The regulator assigns an expert.
    AssignExpert,
    /// The regulator approves: the public notice starts.
    Approve,
    /// The regulator rejects, with reasons.
    Reject,
    /// An objection is upheld: back to review.
    UpholdObjection,
    /// The notice period ended with no objection pending or upheld.
    Admit,
}

impl ApplicationAction {
    /// The code of the action in history and audit entries (`application.<code>`).
    pub fn code(self) -> &'static str {
        match self {
            ApplicationAction::Save => "save",
            ApplicationAction::Submit => "submit",
            ApplicationAction::Return => "return",
            ApplicationAction::AssignExpert => "assign_expert",
            ApplicationAction::Approve => "approve",
            ApplicationAction::Reject => "reject",
            ApplicationAction::UpholdObjection => "uphold_objection",
            ApplicationAction::Admit => "admit",
        }
    }
}

impl ApplicationState {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationState::Draft => "draft",
            ApplicationState::Submitted => "submitted",
            ApplicationState::Returned => "returned",
            ApplicationState::InReview => "in_review",
            ApplicationState::Notice => "notice",
            ApplicationState::Rejected => "rejected",
            ApplicationState::Admitted => "admitted",
        }
    }

    /// The message key of the state's label.
    pub fn label_key(self) -> &'static str {
        match self {
            ApplicationState::Draft => "admission.app_state.draft",
            ApplicationState::Submitted => "admission.app_state.submitted",
            ApplicationState::Returned => "admission.app_state.returned",
            ApplicationState::InReview => "admission.app_state.in_review",
            ApplicationState::Notice => "admission.app_state.notice",
            ApplicationState::Rejected => "admission.app_state.rejected",
            ApplicationState::Admitted => "admission.app_state.admitted",
        }
    }

    /// Whether the application is waiting for the regulator's review.
    pub fn awaits_review(self) -> bool {
        matches!(self, Self::Submitted | Self::InReview)
    }

    /// Whether the applicant may still change it.
    pub fn is_editable(self) -> bool {
        self.decide(ApplicationAction::Save).is_ok()
    }
}

impl Machine for ApplicationState {
    type Action = ApplicationAction;
    const KIND: &'static str = "application";
    const ALL: &'static [Self] = &[
        ApplicationState::Draft,
        ApplicationState::Submitted,
        ApplicationState::Returned,
        ApplicationState::InReview,
        ApplicationState::Notice,
        ApplicationState::Rejected,
        ApplicationState::Admitted,
    ];

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of an application.
    fn decide(self, action: ApplicationAction) -> Result<ApplicationState, Refusal> {
        use ApplicationAction as A;
        use ApplicationState as S;
        match (self, action) {
            (S::Draft, A::Save) => Ok(S::Draft),
            (S::Returned, A::Save) => Ok(S::Returned),
            (S::Draft | S::Returned, A::Submit) => Ok(S::Submitted),
            (S::Submitted | S::InReview, A::Return) => Ok(S::Returned),
            (S::Submitted | S::InReview, A::AssignExpert) => Ok(S::InReview),
            (S::Submitted | S::InReview, A::Approve) => Ok(S::Notice),
            (S::Submitted | S::InReview, A::Reject) => Ok(S::Rejected),
            (S::Notice, A::UpholdObjection) => Ok(S::InReview),
            (S::Notice, A::Admit) => Ok(S::Admitted),
            (_, A::Save | A::Submit) => Err(Refusal::new("admission.err_app_not_editable")),
            (_, A::Return | A::AssignExpert | A::Approve | A::Reject) => {
                Err(Refusal::new("admission.err_app_not_in_review"))
            }
            (_, A::UpholdObjection | A::Admit) => {
                Err(Refusal::new("admission.err_app_not_in_notice"))
            }
        }
    }
}

crate::stored_state!(ApplicationState);

/// An expert's assignment to an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignmentState {
    /// Assigned; the opinion is due.
    Assigned,
    /// The opinion is filed.
    Filed,
}

/// What happens to an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentAction {
    /// The expert files the opinion.
    File,
}

impl AssignmentState {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentState::Assigned => "assigned",
            AssignmentState::Filed => "filed",
        }
    }

    /// The message key of the state's label.
    pub fn label_key(self) -> &'static str {
        match self {
            AssignmentState::Assigned => "admission.assignment_state.assigned",
            AssignmentState::Filed => "admission.assignment_state.filed",
        }
    }
}

impl Machine for AssignmentState {
    type Action = AssignmentAction;
    const KIND: &'static str = "assignment";
    const ALL: &'static [Self] = &[AssignmentState::Assigned, AssignmentState::Filed];

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of an assignment.
    fn decide(self, action: AssignmentAction) -> Result<AssignmentState, Refusal> {
        match (self, action) {
            (AssignmentState::Assigned, AssignmentAction::File) => Ok(AssignmentState::Filed),
            (AssignmentState::Filed, AssignmentAction::File) => {
                Err(Refusal::new("admission.err_opinion_filed"))
            }
        }
    }
}

crate::stored_state!(AssignmentState);

/// An objection filed during a notice period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectionState {
    /// Waiting for the regulator (5 working days).
    Pending,
    /// Dismissed with reasons.
    Dismissed,
    /// Upheld: the application went back to review.
    Upheld,
}

/// What the regulator does with an objection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectionAction {
    /// Dismiss, with reasons.
    Dismiss,
    /// Uphold, with reasons.
    Uphold,
}

impl ObjectionAction {
    /// The action a route segment (`/admission/objections/{id}/{segment}`) names; also the
    /// verb of its audit entry (`objection.<segment>`).
    pub fn from_segment(segment: &str) -> Option<ObjectionAction> {
        match segment {
            "dismiss" => Some(ObjectionAction::Dismiss),
            "uphold" => Some(ObjectionAction::Uphold),
            _ => None,
        }
    }

    /// The verb of the action's audit entry (`objection.<verb>`).
    pub fn verb(self) -> &'static str {
        match self {
            ObjectionAction::Dismiss => "dismiss",
            ObjectionAction::Uphold => "uphold",
        }
    }
}

impl ObjectionState {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectionState::Pending => "pending",
            ObjectionState::Dismissed => "dismissed",
            ObjectionState::Upheld => "upheld",
        }
    }

    /// The message key of the state's label.
    pub fn label_key(self) -> &'static str {
        match self {
            ObjectionState::Pending => "admission.objection_state.pending",
            ObjectionState::Dismissed => "admission.objection_state.dismissed",
            ObjectionState::Upheld => "admission.objection_state.upheld",
        }
    }
}

impl Machine for ObjectionState {
    type Action = ObjectionAction;
    const KIND: &'static str = "objection";
    const ALL: &'static [Self] = &[
        ObjectionState::Pending,
        ObjectionState::Dismissed,
        ObjectionState::Upheld,
    ];

    fn code(self) -> &'static str {
        self.as_str()
    }

    /// The one transition function of an objection.
    fn decide(self, action: ObjectionAction) -> Result<ObjectionState, Refusal> {
        match (self, action) {
            (ObjectionState::Pending, ObjectionAction::Dismiss) => Ok(ObjectionState::Dismissed),
            (ObjectionState::Pending, ObjectionAction::Uphold) => Ok(ObjectionState::Upheld),
            (ObjectionState::Dismissed | ObjectionState::Upheld, _) => {
                Err(Refusal::new("admission.err_objection_decided"))
            }
        }
    }
}

crate::stored_state!(ObjectionState);

/// An expert's recommendation (a value of the opinion, not a workflow state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recommendation {
    /// Approve.
    Approve,
    /// Approve with conditions.
    ApproveWithConditions,
    /// Reject.
    Reject,
}

impl Recommendation {
    /// Every recommendation, in form order.
    pub const ALL: [Recommendation; 3] = [
        Recommendation::Approve,
        Recommendation::ApproveWithConditions,
        Recommendation::Reject,
    ];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Approve => "approve",
            Recommendation::ApproveWithConditions => "approve_with_conditions",
            Recommendation::Reject => "reject",
        }
    }

    /// Parses a posted or stored code.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The message key of the recommendation's label.
    pub fn label_key(self) -> &'static str {
        match self {
            Recommendation::Approve => "admission.recommendation.approve",
            Recommendation::ApproveWithConditions => {
                "admission.recommendation.approve_with_conditions"
            }
            Recommendation::Reject => "admission.recommendation.reject",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::table;

    /// Walks `table` and checks it against `legal`: every legal move leads where `legal` says,
    /// every other one is refused with an admission message key. Returns the number of legal
    /// moves seen.
    fn check<M: Machine>(actions: &[M::Action], legal: &[(M, M::Action, M)]) -> usize
    where
        M::Action: PartialEq,
    {
        let mut seen = 0;
        for (from, action, got) in table::<M>(actions) {
            let want = legal
                .iter()
                .find(|(f, a, _)| *f == from && *a == action)
                .map(|(_, _, to)| *to);
            match (got, want) {
                (Ok(to), Some(w)) => {
                    assert_eq!(to, w, "{from:?} {action:?}");
                    seen += 1;
                }
                (Err(Refusal { key, .. }), None) => {
                    assert!(
                        key.starts_with("admission.err_"),
                        "{from:?} {action:?}: {key}"
                    );
                }
                (got, want) => panic!("{from:?} {action:?}: got {got:?}, want {want:?}"),
            }
        }
        seen
    }

    #[test]
    fn every_call_transition_is_decided_as_documented() {
        use CallAction as A;
        use CallState as S;
        let legal = [
            (S::Draft, A::Edit, S::Draft),
            (S::Draft, A::Publish, S::Published),
            (S::Draft, A::Withdraw, S::Withdrawn),
            (S::Published, A::Close, S::Closed),
            (S::Published, A::Withdraw, S::Withdrawn),
        ];
        let seen = check(&[A::Edit, A::Publish, A::Close, A::Withdraw], &legal);
        assert_eq!(seen, legal.len());
        assert_eq!(
            S::Closed.decide(A::Publish),
            Err(Refusal::new("admission.err_call_not_draft"))
        );
        assert_eq!(
            S::Withdrawn.decide(A::Withdraw),
            Err(Refusal::new("admission.err_call_finished"))
        );
    }

    #[test]
    fn every_application_transition_is_decided_as_documented() {
        use ApplicationAction as A;
        use ApplicationState as S;
        let legal = [
            (S::Draft, A::Save, S::Draft),
            (S::Returned, A::Save, S::Returned),
            (S::Draft, A::Submit, S::Submitted),
            (S::Returned, A::Submit, S::Submitted),
            (S::Submitted, A::Return, S::Returned),
            (S::InReview, A::Return, S::Returned),
            (S::Submitted, A::AssignExpert, S::InReview),
            (S::InReview, A::AssignExpert, S::InReview),
            (S::Submitted, A::Approve, S::Notice),
            (S::InReview, A::Approve, S::Notice),
            (S::Submitted, A::Reject, S::Rejected),
            (S::InReview, A::Reject, S::Rejected),
            (S::Notice, A::UpholdObjection, S::InReview),
            (S::Notice, A::Admit, S::Admitted),
        ];
        let actions = [
            A::Save,
            A::Submit,
            A::Return,
            A::AssignExpert,
            A::Approve,
            A::Reject,
            A::UpholdObjection,
            A::Admit,
        ];
        assert_eq!(check(&actions, &legal), legal.len());
        for a in actions {
            assert!(S::Admitted.decide(a).is_err(), "admitted is final: {a:?}");
            assert!(S::Rejected.decide(a).is_err(), "rejected is final: {a:?}");
        }
        assert_eq!(
            S::Notice.decide(A::Save),
            Err(Refusal::new("admission.err_app_not_editable"))
        );
    }

    #[test]
    fn every_assignment_and_objection_transition_is_decided_as_documented() {
        let legal = [(
            AssignmentState::Assigned,
            AssignmentAction::File,
            AssignmentState::Filed,
        )];
        assert_eq!(check(&[AssignmentAction::File], &legal), 1);
        assert_eq!(
            AssignmentState::Filed.decide(AssignmentAction::File),
            Err(Refusal::new("admission.err_opinion_filed"))
        );
        use ObjectionAction as A;
        use ObjectionState as S;
        let legal = [
            (S::Pending, A::Dismiss, S::Dismissed),
            (S::Pending, A::Uphold, S::Upheld),
        ];
        assert_eq!(check(&[A::Dismiss, A::Uphold], &legal), 2);
        assert_eq!(
            S::Upheld.decide(A::Dismiss),
            Err(Refusal::new("admission.err_objection_decided"))
        );
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_errors() {
        for s in ApplicationState::ALL {
            assert_eq!(ApplicationState::try_from(s.to_string()), Ok(*s));
        }
        for s in CallState::ALL {
            assert_eq!(CallState::parse(s.as_str()), Ok(*s));
        }
        for s in AssignmentState::ALL {
            assert_eq!(AssignmentState::parse(s.as_str()), Ok(*s));
        }
        for s in ObjectionState::ALL {
            assert_eq!(ObjectionState::parse(s.as_str()), Ok(*s));
        }
        assert_eq!(ApplicationState::Admitted.as_str(), "admitted");
        assert!(CallState::parse("nope").is_err());
        assert!(ApplicationState::try_from("approved".to_owned()).is_err());
        assert_eq!(
            Recommendation::ApproveWithConditions.label_key(),
            "admission.recommendation.approve_with_conditions"
        );
        assert_eq!(
            ApplicationState::InReview.label_key(),
            "admission.app_state.in_review"
        );
    }
}
