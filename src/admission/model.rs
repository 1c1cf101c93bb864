//! Admission data: the rows of calls, applications, their events, attachments, expert
//! assignments, objections and credit records, and the queries the pages need.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::machine::{ApplicationState, CallState};
use crate::catalog::model::Dataset;
use crate::db::DbConnection;
use crate::schema::{
    application_attachments, application_datasets, application_events, applications, call_datasets,
    calls, credit_records, datasets, expert_assignments, objections, users,
};
use crate::supervision::audit::Actor;

/// A row of `calls`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = calls)]
pub struct Call {
    /// Id.
    pub id: i64,
    /// Domain (a catalog category code, e.g. `medical_services`).
    pub domain: String,
    /// Chinese title.
    pub title_zh: String,
    /// English title.
    pub title_en: String,
    /// Chinese text.
    pub body_zh: String,
    /// English text.
    pub body_en: String,
    /// Application scenarios, one per line.
    pub scenarios: String,
    /// Admission conditions.
    pub conditions: String,
    /// First day applications are taken.
    pub opens_on: NaiveDate,
    /// Last day applications are taken.
    pub closes_on: NaiveDate,
    /// [`CallState`] code.
    pub state: String,
    /// Author.
    pub created_by: i64,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// Publication time.
    pub published_at: Option<NaiveDateTime>,
}

impl Call {
    /// The state (draft if the stored code is unknown).
    pub fn state(&self) -> CallState {
        CallState::parse(&self.state).unwrap_or(CallState::Draft)
    }

    /// The title in `lang`.
    pub fn title(&self, lang: crate::i18n::Lang) -> &str {
        crate::i18n::pick(lang, &self.title_zh, &self.title_en)
    }

    /// The text in `lang`.
    pub fn body(&self, lang: crate::i18n::Lang) -> &str {
        crate::i18n::pick(lang, &self.body_zh, &self.body_en)
    }

    /// The scenarios, one per non-empty line.
    pub fn scenario_list(&self) -> Vec<String> {
        self.scenarios
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether the call takes applications on `today`.
    pub fn is_open(&self, today: NaiveDate) -> bool {
        self.state() == CallState::Published && self.opens_on <= today && today <= self.closes_on
    }

    /// Whether the public may see it.
    pub fn is_public(&self) -> bool {
        matches!(self.state(), CallState::Published | CallState::Closed)
    }
}

/// The writable fields of a call.
#[derive(Debug, Clone, Default, Insertable, AsChangeset)]
#[diesel(table_name = calls)]
pub struct CallFields {
    /// Domain code.
    pub domain: String,
    /// Chinese title.
    pub title_zh: String,
    /// English title.
    pub title_en: String,
    /// Chinese text.
    pub body_zh: String,
    /// English text.
    pub body_en: String,
    /// Scenarios, one per line.
    pub scenarios: String,
    /// Conditions.
    pub conditions: String,
    /// Opening date.
    pub opens_on: NaiveDate,
    /// Closing date.
    pub closes_on: NaiveDate,
}

/// A call by id.
pub fn find_call(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Call>> {
    calls::table
        .find(id)
        .select(Call::as_select())
        .first(conn)
        .optional()
}

/// Every call (regulator's list), newest first; or only the public ones.
pub fn list_calls(conn: &mut DbConnection, public_only: bool) -> QueryResult<Vec<Call>> {
    let mut q = calls::table.into_boxed();
    if public_only {
        q = q.filter(
            calls::state.eq_any([CallState::Published.as_str(), CallState::Closed.as_str()]),
        );
    }
    q.order(calls::id.desc())
        .limit(500)
        .select(Call::as_select())
        .load(conn)
}

/// The datasets a call offers.
pub fn call_datasets_of(conn: &mut DbConnection, call_id: i64) -> QueryResult<Vec<Dataset>> {
    call_datasets::table
        .inner_join(datasets::table)
        .filter(call_datasets::call_id.eq(call_id))
        .order(datasets::id)
        .select(Dataset::as_select())
        .load(conn)
}

/// Replaces the datasets a call offers.
pub fn set_call_datasets(conn: &mut DbConnection, call_id: i64, ids: &[i64]) -> QueryResult<()> {
    diesel::delete(call_datasets::table.filter(call_datasets::call_id.eq(call_id)))
        .execute(conn)?;
    for id in ids {
        diesel::insert_into(call_datasets::table)
            .values((
                call_datasets::call_id.eq(call_id),
                call_datasets::dataset_id.eq(id),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// A row of `applications`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = applications)]
pub struct Application {
    /// Id.
    pub id: i64,
    /// The call.
    pub call_id: i64,
    /// The applicant organisation.
    pub org_id: i64,
    /// The user who started it.
    pub created_by: i64,
    /// [`ApplicationState`] code.
    pub state: String,
    /// The application scenario.
    pub scenario: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// Last submission.
    pub submitted_at: Option<NaiveDateTime>,
    /// Approval or rejection.
    pub decided_at: Option<NaiveDateTime>,
    /// Snapshot: organisation name.
    pub org_name: String,
    /// Snapshot: unified social credit code.
    pub credit_code: String,
    /// Snapshot: legal representative.
    pub legal_representative: String,
    /// Snapshot: contact person.
    pub contact_name: String,
    /// Snapshot: contact phone.
    pub contact_phone: String,
    /// Snapshot: address.
    pub address: String,
    /// Evidence: basic security.
    pub evidence_basic: String,
    /// Evidence: technical security.
    pub evidence_technical: String,
    /// Evidence: application scenario.
    pub evidence_scenario: String,
    /// Evidence: the domain's specific security requirements.
    pub evidence_domain: String,
    /// The declaration was ticked.
    pub declared: bool,
    /// The review deadline (from the last submission).
    pub review_due_on: Option<NaiveDate>,
    /// The last day of the public notice.
    pub notice_ends_on: Option<NaiveDate>,
    /// Reasons of a rejection.
    pub decision_reasons: String,
    /// When it became admitted.
    pub admitted_at: Option<NaiveDateTime>,
}

impl Application {
    /// The state (draft if the stored code is unknown).
    pub fn state(&self) -> ApplicationState {
        ApplicationState::parse(&self.state).unwrap_or(ApplicationState::Draft)
    }

    /// The evidence text of a group.
    pub fn evidence(&self, group: EvidenceGroup) -> &str {
        match group {
            EvidenceGroup::Basic => &self.evidence_basic,
            EvidenceGroup::Technical => &self.evidence_technical,
            EvidenceGroup::Scenario => &self.evidence_scenario,
            EvidenceGroup::Domain => &self.evidence_domain,
        }
    }
}

/// The four groups of admission requirements (Hangzhou point 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceGroup {
    /// 基本安全要求
    Basic,
    /// 技术安全要求
    Technical,
    /// 应用场景要求
    Scenario,
    /// 领域特定安全要求
    Domain,
}

impl EvidenceGroup {
    /// All groups, in form order.
    pub const ALL: [EvidenceGroup; 4] = [
        EvidenceGroup::Basic,
        EvidenceGroup::Technical,
        EvidenceGroup::Scenario,
        EvidenceGroup::Domain,
    ];

    /// The stored code (also the form field suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceGroup::Basic => "basic",
            EvidenceGroup::Technical => "technical",
            EvidenceGroup::Scenario => "scenario",
            EvidenceGroup::Domain => "domain",
        }
    }

    /// Parses a stored code.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The message key of the group's name.
    pub fn label_key(self) -> &'static str {
        match self {
            EvidenceGroup::Basic => "admission.group.basic",
            EvidenceGroup::Technical => "admission.group.technical",
            EvidenceGroup::Scenario => "admission.group.scenario",
            EvidenceGroup::Domain => "admission.group.domain",
        }
    }
}

/// An application by id.
pub fn find_application(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Application>> {
    applications::table
        .find(id)
        .select(Application::as_select())
        .first(conn)
        .optional()
}

/// The applications of an organisation, newest first.
pub fn applications_of_org(conn: &mut DbConnection, org_id: i64) -> QueryResult<Vec<Application>> {
    applications::table
        .filter(applications::org_id.eq(org_id))
        .order(applications::id.desc())
        .limit(500)
        .select(Application::as_select())
        .load(conn)
}

/// Applications in any of `states`, oldest first.
pub fn applications_in(
    conn: &mut DbConnection,
    states: &[ApplicationState],
) -> QueryResult<Vec<Application>> {
    let codes: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    applications::table
        .filter(applications::state.eq_any(codes))
        .order(applications::id.asc())
        .limit(1000)
        .select(Application::as_select())
        .load(conn)
}

/// The requested datasets of an application with their purposes.
pub fn requested_datasets(
    conn: &mut DbConnection,
    app_id: i64,
) -> QueryResult<Vec<(Dataset, String)>> {
    application_datasets::table
        .inner_join(datasets::table)
        .filter(application_datasets::application_id.eq(app_id))
        .order(datasets::id)
        .select((Dataset::as_select(), application_datasets::purpose))
        .load(conn)
}

/// A row of `application_events`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = application_events)]
pub struct Event {
    /// Id.
    pub id: i64,
    /// The application.
    pub application_id: i64,
    /// When.
    pub at: NaiveDateTime,
    /// Who (a user), if a user.
    pub actor_user_id: Option<i64>,
    /// Who, by name.
    pub actor_name: String,
    /// The action code (`submit`, `return`, ...).
    pub action: String,
    /// State before.
    pub from_state: String,
    /// State after.
    pub to_state: String,
    /// The message that came with it.
    pub message: String,
}

/// Records a transition in the application's history.
pub fn record_event(
    conn: &mut DbConnection,
    app_id: i64,
    actor: &Actor,
    action: &str,
    (from, to): (ApplicationState, ApplicationState),
    message: &str,
) -> QueryResult<()> {
    diesel::insert_into(application_events::table)
        .values((
            application_events::application_id.eq(app_id),
            application_events::at.eq(crate::db::now()),
            application_events::actor_user_id.eq(actor.user_id),
            application_events::actor_name.eq(&actor.name),
            application_events::action.eq(action),
            application_events::from_state.eq(from.as_str()),
            application_events::to_state.eq(to.as_str()),
            application_events::message.eq(message),
        ))
        .execute(conn)?;
    Ok(())
}

/// The history of an application, oldest first.
pub fn events_of(conn: &mut DbConnection, app_id: i64) -> QueryResult<Vec<Event>> {
    application_events::table
        .filter(application_events::application_id.eq(app_id))
        .order(application_events::id.asc())
        .select(Event::as_select())
        .load(conn)
}

/// A row of `application_attachments`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = application_attachments)]
pub struct Attachment {
    /// Id.
    pub id: i64,
    /// The application.
    pub application_id: i64,
    /// [`EvidenceGroup`] code.
    pub evidence_group: String,
    /// The uploaded file's name (cleaned).
    pub file_name: String,
    /// `application/pdf`, `image/png` or `image/jpeg` (from the content).
    pub content_type: String,
    /// Size.
    pub byte_count: i64,
    /// SHA-256 of the content.
    pub sha256: String,
    /// Path relative to the data dir.
    pub storage_path: String,
    /// Uploader.
    pub uploaded_by: i64,
    /// When.
    pub created_at: NaiveDateTime,
}

/// The attachments of an application.
pub fn attachments_of(conn: &mut DbConnection, app_id: i64) -> QueryResult<Vec<Attachment>> {
    application_attachments::table
        .filter(application_attachments::application_id.eq(app_id))
        .order(application_attachments::id.asc())
        .select(Attachment::as_select())
        .load(conn)
}

/// A row of `expert_assignments`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = expert_assignments)]
pub struct Assignment {
    /// Id.
    pub id: i64,
    /// The application.
    pub application_id: i64,
    /// The expert.
    pub expert_user_id: i64,
    /// [`super::machine::AssignmentState`] code.
    pub state: String,
    /// The regulator who assigned.
    pub assigned_by: i64,
    /// When.
    pub assigned_at: NaiveDateTime,
    /// The opinion is due on.
    pub due_on: NaiveDate,
    /// [`super::machine::Recommendation`] code (once filed).
    pub recommendation: String,
    /// The written opinion (and conditions).
    pub opinion: String,
    /// When filed.
    pub filed_at: Option<NaiveDateTime>,
}

/// The assignments of an application with the experts' display names.
pub fn assignments_of(
    conn: &mut DbConnection,
    app_id: i64,
) -> QueryResult<Vec<(Assignment, String)>> {
    expert_assignments::table
        .inner_join(users::table.on(users::id.eq(expert_assignments::expert_user_id)))
        .filter(expert_assignments::application_id.eq(app_id))
        .order(expert_assignments::id.asc())
        .select((Assignment::as_select(), users::display_name))
        .load(conn)
}

/// The assignments of an expert, newest first.
pub fn assignments_for_expert(
    conn: &mut DbConnection,
    user_id: i64,
) -> QueryResult<Vec<Assignment>> {
    expert_assignments::table
        .filter(expert_assignments::expert_user_id.eq(user_id))
        .order(expert_assignments::id.desc())
        .limit(500)
        .select(Assignment::as_select())
        .load(conn)
}

/// A row of `objections`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = objections)]
pub struct Objection {
    /// Id.
    pub id: i64,
    /// The application.
    pub application_id: i64,
    /// The objector's name.
    pub name: String,
    /// The objector's contact (email or phone).
    pub contact: String,
    /// The grounds.
    pub grounds: String,
    /// [`super::machine::ObjectionState`] code.
    pub state: String,
    /// Source address (rate limit).
    pub source_addr: String,
    /// When filed.
    pub filed_at: NaiveDateTime,
    /// The regulator must decide by.
    pub due_on: NaiveDate,
    /// Who decided.
    pub decided_by: Option<i64>,
    /// When decided.
    pub decided_at: Option<NaiveDateTime>,
    /// The decision's reasons.
    pub reasons: String,
}

/// The objection `id`.
pub fn find_objection(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Objection>> {
    objections::table
        .find(id)
        .select(Objection::as_select())
        .first(conn)
        .optional()
}

/// The objections to an application.
pub fn objections_of(conn: &mut DbConnection, app_id: i64) -> QueryResult<Vec<Objection>> {
    objections::table
        .filter(objections::application_id.eq(app_id))
        .order(objections::id.asc())
        .select(Objection::as_select())
        .load(conn)
}

/// Objections in `state`.
pub fn objections_in(conn: &mut DbConnection, state: &str) -> QueryResult<Vec<Objection>> {
    objections::table
        .filter(objections::state.eq(state))
        .order(objections::id.asc())
        .limit(1000)
        .select(Objection::as_select())
        .load(conn)
}

/// A row of `credit_records`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = credit_records)]
pub struct CreditRecord {
    /// Id.
    pub id: i64,
    /// The organisation.
    pub org_id: i64,
    /// Kind: how the agreement ended (`terminated_for_breach`, `terminated_for_violation`).
    pub kind: String,
    /// What happened.
    pub summary: String,
    /// The agreement concerned.
    pub agreement_id: Option<i64>,
    /// Who wrote it.
    pub created_by: Option<i64>,
    /// When.
    pub created_at: NaiveDateTime,
}

impl CreditRecord {
    /// The message key of the kind's label (the agreement end state it records).
    pub fn kind_key(&self) -> String {
        format!("agreements.state.{}", self.kind)
    }
}

/// An organisation's credit record, newest first.
pub fn credit_records_of(conn: &mut DbConnection, org_id: i64) -> QueryResult<Vec<CreditRecord>> {
    credit_records::table
        .filter(credit_records::org_id.eq(org_id))
        .order(credit_records::id.desc())
        .limit(200)
        .select(CreditRecord::as_select())
        .load(conn)
}

/// The number of credit-record entries of one organisation.
pub fn credit_record_count(conn: &mut DbConnection, org_id: i64) -> QueryResult<i64> {
    credit_records::table
        .filter(credit_records::org_id.eq(org_id))
        .count()
        .get_result(conn)
}

/// The number of credit-record entries per organisation (organisations with none are absent).
pub fn credit_record_counts(conn: &mut DbConnection) -> QueryResult<Vec<(i64, i64)>> {
    credit_records::table
        .group_by(credit_records::org_id)
        .select((credit_records::org_id, diesel::dsl::count_star()))
        .load(conn)
}
