//! The admission workflows as explicit state machines: a call, an application, an expert
//! assignment and an objection. Each has an enum of states (stored as snake_case text), an enum
//! of actions, and ONE function deciding each transition; a refusal carries the message key
//! shown with the HTTP 409.

/// Why a transition is refused: the message key explaining it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub &'static str);

/// Declares a state enum stored as text, with its message key.
macro_rules! states {
    ($(#[$m:meta])* $name:ident, $prefix:literal { $($(#[$vm:meta])* $variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }

        impl $name {
            /// Every state.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored code.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// Parses a stored code.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            /// The message key of the state's label.
            pub fn label_key(self) -> &'static str {
                match self {
                    $($name::$variant => concat!("admission.", $prefix, ".", $code)),+
                }
            }
        }
    };
}

states! {
    /// The life of a call for applications (发布通告).
    CallState, "call_state" {
        /// Being written by the regulator; not public.
        Draft => "draft",
        /// Public; takes applications between its opening and closing dates.
        Published => "published",
        /// Past its closing date or closed by the regulator.
        Closed => "closed",
        /// Withdrawn by the regulator.
        Withdrawn => "withdrawn",
    }
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

impl CallState {
    /// The one transition function of a call.
    pub fn apply(self, action: CallAction) -> Result<CallState, Refusal> {
        use CallAction as A;
        use CallState as S;
        match (self, action) {
            (S::Draft, A::Edit) => Ok(S::Draft),
            (S::Draft, A::Publish) => Ok(S::Published),
            (S::Published, A::Close) => Ok(S::Closed),
            (S::Draft | S::Published, A::Withdraw) => Ok(S::Withdrawn),
            (_, A::Edit) => Err(Refusal("admission.err_call_not_draft")),
            (_, A::Publish) => Err(Refusal("admission.err_call_not_draft")),
            (_, A::Close) => Err(Refusal("admission.err_call_not_published")),
            (_, A::Withdraw) => Err(Refusal("admission.err_call_finished")),
        }
    }
}

states! {
    /// The life of an application (提交申请 → 审核申请 → 公开结果).
    ///
    /// `admitted` is the contract with the agreements: an agreement may be drafted exactly for
    /// applications in that state.
    ApplicationState, "app_state" {
        /// Being written by the enterprise.
        Draft => "draft",
        /// Submitted; waiting for the regulator's completeness check.
        Submitted => "submitted",
        /// Returned to the enterprise for supplement.
        Returned => "returned",
        /// Under review: experts assigned or an upheld objection sent it back.
        InReview => "in_review",
        /// Approved and published on the notice page; objections may be filed.
        Notice => "notice",
        /// Rejected, with reasons.
        Rejected => "rejected",
        /// Notice period over with no objection pending or upheld: an agreement may be drafted.
        Admitted => "admitted",
    }
}

/// What happens to an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationAction {
    /// The enterprise saves its draft (or its returned application).
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

impl ApplicationState {
    /// The one transition function of an application.
    pub fn apply(self, action: ApplicationAction) -> Result<ApplicationState, Refusal> {
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
            (_, A::Save | A::Submit) => Err(Refusal("admission.err_app_not_editable")),
            (_, A::Return | A::AssignExpert | A::Approve | A::Reject) => {
                Err(Refusal("admission.err_app_not_in_review"))
            }
            (_, A::UpholdObjection | A::Admit) => Err(Refusal("admission.err_app_not_in_notice")),
        }
    }

    /// Whether the application is waiting for the regulator's review.
    pub fn awaits_review(self) -> bool {
        matches!(self, Self::Submitted | Self::InReview)
    }
}

states! {
    /// An expert's assignment to an application.
    AssignmentState, "assignment_state" {
        /// Assigned; the opinion is due.
        Assigned => "assigned",
        /// The opinion is filed.
        Filed => "filed",
    }
}

/// What happens to an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentAction {
    /// The expert files the opinion.
    File,
}

impl AssignmentState {
    /// The one transition function of an assignment.
    pub fn apply(self, action: AssignmentAction) -> Result<AssignmentState, Refusal> {
        match (self, action) {
            (AssignmentState::Assigned, AssignmentAction::File) => Ok(AssignmentState::Filed),
            (AssignmentState::Filed, AssignmentAction::File) => {
                Err(Refusal("admission.err_opinion_filed"))
            }
        }
    }
}

states! {
    /// An objection filed during a notice period.
    ObjectionState, "objection_state" {
        /// Waiting for the regulator (5 working days).
        Pending => "pending",
        /// Dismissed with reasons.
        Dismissed => "dismissed",
        /// Upheld: the application went back to review.
        Upheld => "upheld",
    }
}

/// What the regulator does with an objection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectionAction {
    /// Dismiss, with reasons.
    Dismiss,
    /// Uphold, with reasons.
    Uphold,
}

impl ObjectionState {
    /// The one transition function of an objection.
    pub fn apply(self, action: ObjectionAction) -> Result<ObjectionState, Refusal> {
        match (self, action) {
            (ObjectionState::Pending, ObjectionAction::Dismiss) => Ok(ObjectionState::Dismissed),
            (ObjectionState::Pending, ObjectionAction::Uphold) => Ok(ObjectionState::Upheld),
            _ => Err(Refusal("admission.err_objection_decided")),
        }
    }
}

states! {
    /// An expert's recommendation.
    Recommendation, "recommendation" {
        /// Approve.
        Approve => "approve",
        /// Approve with conditions.
        ApproveWithConditions => "approve_with_conditions",
        /// Reject.
        Reject => "reject",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_transitions() {
        use CallAction as A;
        use CallState as S;
        let actions = [A::Edit, A::Publish, A::Close, A::Withdraw];
        let legal = [
            (S::Draft, A::Edit, S::Draft),
            (S::Draft, A::Publish, S::Published),
            (S::Draft, A::Withdraw, S::Withdrawn),
            (S::Published, A::Close, S::Closed),
            (S::Published, A::Withdraw, S::Withdrawn),
        ];
        for &from in S::ALL {
            for action in actions {
                let expected = legal
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                match (from.apply(action), expected) {
                    (Ok(to), Some(e)) => assert_eq!(to, e, "{from:?} {action:?}"),
                    (Err(Refusal(key)), None) => assert!(key.starts_with("admission.err_")),
                    (got, want) => panic!("{from:?} {action:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn application_transitions() {
        use ApplicationAction as A;
        use ApplicationState as S;
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
        let mut legal_seen = 0;
        for &from in S::ALL {
            for action in actions {
                let expected = legal
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                match (from.apply(action), expected) {
                    (Ok(to), Some(e)) => {
                        assert_eq!(to, e, "{from:?} {action:?}");
                        legal_seen += 1;
                    }
                    (Err(Refusal(key)), None) => assert!(key.starts_with("admission.err_")),
                    (got, want) => panic!("{from:?} {action:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(legal_seen, legal.len());
        assert!(S::Admitted.apply(A::Admit).is_err(), "admitted is final");
        assert!(S::Rejected.apply(A::Submit).is_err(), "rejected is final");
    }

    #[test]
    fn assignment_and_objection_transitions() {
        assert_eq!(
            AssignmentState::Assigned.apply(AssignmentAction::File),
            Ok(AssignmentState::Filed)
        );
        assert_eq!(
            AssignmentState::Filed.apply(AssignmentAction::File),
            Err(Refusal("admission.err_opinion_filed"))
        );
        use ObjectionAction as A;
        use ObjectionState as S;
        assert_eq!(S::Pending.apply(A::Dismiss), Ok(S::Dismissed));
        assert_eq!(S::Pending.apply(A::Uphold), Ok(S::Upheld));
        for from in [S::Dismissed, S::Upheld] {
            for a in [A::Dismiss, A::Uphold] {
                assert_eq!(
                    from.apply(a),
                    Err(Refusal("admission.err_objection_decided"))
                );
            }
        }
    }

    #[test]
    fn codes_round_trip() {
        for s in ApplicationState::ALL {
            assert_eq!(ApplicationState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(ApplicationState::Admitted.as_str(), "admitted");
        assert_eq!(CallState::parse("nope"), None);
        assert_eq!(
            Recommendation::ApproveWithConditions.label_key(),
            "admission.recommendation.approve_with_conditions"
        );
    }
}
