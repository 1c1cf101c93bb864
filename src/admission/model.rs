//! Admission data: the rows of calls, applications, their events, attachments, expert
//! assignments, objections and credit records, and the domain's public queries (what the
//! pages, the desk and other domains read). State columns are read as the typed states of
//! [`super::machine`]: a stored code that names no state makes the row unreadable.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::machine::{
    ApplicationState, AssignmentState, CallState, ObjectionState, Recommendation,
};
use crate::auth::{CurrentUser, Role};
use crate::catalog::model::Dataset;
use crate::db::DbConnection;
use crate::errors::AppError;
use crate::schema::{
    application_attachments, application_datasets, application_events, applications, call_datasets,
    calls, credit_records, datasets, expert_assignments, objections, organisations, users,
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
    /// State.
    #[diesel(deserialize_as = String)]
    pub state: CallState,
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
        self.state == CallState::Published && self.opens_on <= today && today <= self.closes_on
    }

    /// Whether the public may see it.
    pub fn is_public(&self) -> bool {
        self.state.is_public()
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

/// The published calls whose closing date is before `today` (for the scheduler to close).
pub fn calls_due_to_close(conn: &mut DbConnection, today: NaiveDate) -> QueryResult<Vec<i64>> {
    calls::table
        .filter(calls::state.eq(CallState::Published.as_str()))
        .filter(calls::closes_on.lt(today))
        .select(calls::id)
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
    /// State.
    #[diesel(deserialize_as = String)]
    pub state: ApplicationState,
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

/// Who is looking at an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// A user of the applicant organisation.
    Owner,
    /// Regulator staff.
    Regulator,
    /// An expert assigned to it (the assignment's id).
    Expert(i64),
}

/// The application `id` as `user` may see it: 404 when there is none or the user may not
/// know it exists (another organisation's, an unassigned expert, a draft for the regulator).
pub fn visible(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
) -> Result<(Application, Viewer), AppError> {
    let app = find_application(conn, id)?.ok_or_else(AppError::not_found)?;
    let viewer = match user.role {
        Role::Enterprise if app.org_id == user.org_id => Viewer::Owner,
        Role::Regulator if app.state != ApplicationState::Draft => Viewer::Regulator,
        Role::Expert => {
            let asg = assignments_of(conn, id)?
                .into_iter()
                .find(|(a, _)| a.expert_user_id == user.id)
                .ok_or_else(AppError::not_found)?;
            Viewer::Expert(asg.0.id)
        }
        _ => return Err(AppError::not_found()),
    };
    Ok((app, viewer))
}

/// The application of organisation `org_id` to call `call_id`, if it has one.
pub fn application_to_call(
    conn: &mut DbConnection,
    call_id: i64,
    org_id: i64,
) -> QueryResult<Option<i64>> {
    applications::table
        .filter(applications::call_id.eq(call_id))
        .filter(applications::org_id.eq(org_id))
        .select(applications::id)
        .first(conn)
        .optional()
}

/// The applications to call `call_id` the regulator sees (not drafts), oldest first.
pub fn submitted_to_call(conn: &mut DbConnection, call_id: i64) -> QueryResult<Vec<Application>> {
    applications::table
        .filter(applications::call_id.eq(call_id))
        .filter(applications::state.ne(ApplicationState::Draft.as_str()))
        .order(applications::id.asc())
        .select(Application::as_select())
        .load(conn)
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
    #[diesel(deserialize_as = String)]
    pub from_state: ApplicationState,
    /// State after.
    #[diesel(deserialize_as = String)]
    pub to_state: ApplicationState,
    /// The message that came with it.
    pub message: String,
}

/// Records a transition at `at` in the application's history (in the transition's
/// transaction).
pub fn record_event(
    conn: &mut DbConnection,
    app_id: i64,
    actor: &Actor,
    action: &str,
    (from, to): (ApplicationState, ApplicationState),
    message: &str,
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(application_events::table)
        .values((
            application_events::application_id.eq(app_id),
            application_events::at.eq(at),
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
    /// State.
    #[diesel(deserialize_as = String)]
    pub state: AssignmentState,
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

impl Assignment {
    /// The filed opinion's recommendation (`None` until filed).
    pub fn recommendation(&self) -> Option<Recommendation> {
        Recommendation::parse(&self.recommendation)
    }
}

/// The active experts (id, display name), the regulator's choice for an assignment.
pub fn active_experts(conn: &mut DbConnection) -> QueryResult<Vec<(i64, String)>> {
    users::table
        .filter(users::role.eq(Role::Expert.as_str()))
        .filter(users::status.eq(crate::accounts::machine::UserStatus::Active.as_str()))
        .order(users::id)
        .limit(500)
        .select((users::id, users::display_name))
        .load(conn)
}

/// The display name of active expert `id` (`None` if `id` is no active expert).
pub fn active_expert_name(conn: &mut DbConnection, id: i64) -> QueryResult<Option<String>> {
    users::table
        .filter(users::id.eq(id))
        .filter(users::role.eq(Role::Expert.as_str()))
        .filter(users::status.eq(crate::accounts::machine::UserStatus::Active.as_str()))
        .select(users::display_name)
        .first(conn)
        .optional()
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
    /// State.
    #[diesel(deserialize_as = String)]
    pub state: ObjectionState,
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
pub fn objections_in(
    conn: &mut DbConnection,
    state: ObjectionState,
) -> QueryResult<Vec<Objection>> {
    objections::table
        .filter(objections::state.eq(state.as_str()))
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

#[cfg(test)]
mod tests {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    use diesel::sqlite::SqliteConnection;

    use super::*;

    #[test]
    fn a_stored_unknown_state_is_an_error_when_the_row_is_loaded() {
        let mut conn = DbConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        crate::db::migrate(&mut conn).unwrap();
        conn.batch_execute(
            "PRAGMA foreign_keys = OFF; INSERT INTO calls (id, domain, title_zh, title_en, body_zh, body_en, scenarios, \
                 conditions, opens_on, closes_on, state, created_by, created_at, updated_at) \
                 VALUES (1, 'medical_services', 't', 't', '', '', 's', '', '2026-01-01', \
                 '2026-02-01', 'published', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00'), \
                 (2, 'medical_services', 't', 't', '', '', 's', '', '2026-01-01', \
                 '2026-02-01', 'archived', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00');",
        )
        .unwrap();
        let known = find_call(&mut conn, 1).unwrap().unwrap();
        assert_eq!(known.state, CallState::Published);
        let unknown = find_call(&mut conn, 2);
        assert!(unknown.is_err(), "read as {unknown:?}");
        assert!(
            format!("{:?}", unknown.unwrap_err()).contains("archived"),
            "the error names the stored code"
        );
        assert!(
            list_calls(&mut conn, false).is_err(),
            "no fallback in lists"
        );
    }
}

/// An application as the agreements read it (the admission contract: an agreement is drafted
/// only from an admitted application).
#[derive(Debug, Clone)]
pub struct ForAgreement {
    /// The applicant (the future operator).
    pub org_id: i64,
    /// Its name.
    pub org_name: String,
    /// The application's state.
    pub state: ApplicationState,
    /// The scenario applied for.
    pub scenario: String,
    /// The requested datasets: (id, catalog title, purpose), by id.
    pub datasets: Vec<(i64, String, String)>,
}

/// Application `id` as the agreements read it, if it exists.
pub fn for_agreement(conn: &mut DbConnection, id: i64) -> QueryResult<Option<ForAgreement>> {
    let Some((org_id, state, scenario, org_name)) = applications::table
        .inner_join(organisations::table)
        .filter(applications::id.eq(id))
        .select((
            applications::org_id,
            applications::state,
            applications::scenario,
            organisations::name,
        ))
        .first::<(i64, String, String, String)>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let state = ApplicationState::try_from(state)
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
    let datasets = application_datasets::table
        .inner_join(datasets::table)
        .filter(application_datasets::application_id.eq(id))
        .order(datasets::id)
        .select((
            datasets::id,
            datasets::title_zh,
            application_datasets::purpose,
        ))
        .load(conn)?;
    Ok(Some(ForAgreement {
        org_id,
        org_name,
        state,
        scenario,
        datasets,
    }))
}

/// Admitted applications (id, applicant's name) other than `except`, oldest first, at most
/// `limit`.
pub fn admitted_except(
    conn: &mut DbConnection,
    except: &[i64],
    limit: i64,
) -> QueryResult<Vec<(i64, String)>> {
    applications::table
        .inner_join(organisations::table)
        .filter(applications::state.eq(ApplicationState::Admitted.as_str()))
        .filter(applications::id.ne_all(except))
        .order(applications::id)
        .limit(limit)
        .select((applications::id, organisations::name))
        .load(conn)
}

/// The dataset ids requested (and, once admitted, approved) in application `id`.
pub fn dataset_ids_of(
    conn: &mut DbConnection,
    id: i64,
) -> QueryResult<std::collections::BTreeSet<i64>> {
    Ok(application_datasets::table
        .filter(application_datasets::application_id.eq(id))
        .select(application_datasets::dataset_id)
        .load::<i64>(conn)?
        .into_iter()
        .collect())
}
