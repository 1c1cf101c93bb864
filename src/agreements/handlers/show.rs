//! The agreement page, its print view and canonical text.

use super::*;

/// A rectification order as shown.
#[derive(Debug, Clone)]
pub struct RectView {
    /// The row.
    pub r: model::Rectification,
    /// State label key.
    pub state_key: String,
    /// Whether the operator may still answer.
    pub open: bool,
    /// Whether it waits for the regulator's decision.
    pub answered: bool,
    /// Its deadline today.
    pub deadline: Deadline,
}

/// A termination request as shown.
#[derive(Debug, Clone)]
pub struct RequestView {
    /// The row.
    pub r: model::TerminationRequest,
    /// State label key.
    pub state_key: String,
    /// Whether it waits for a decision.
    pub pending: bool,
}

/// One history entry.
#[derive(Debug, Clone)]
pub struct EventView {
    /// When (UTC).
    pub at: String,
    /// Who.
    pub actor: String,
    /// Label key of the action.
    pub action_key: String,
    /// Details, rendered as the audit page renders them.
    pub details: Vec<crate::supervision::details::Detail>,
}

#[derive(Template)]
#[template(path = "agreements/show.html")]
pub(super) struct ShowPage {
    page: Page,
    a: Agreement,
    ds: Vec<AgreementDataset>,
    state_key: String,
    badge: &'static str,
    rects: Vec<RectView>,
    requests: Vec<RequestView>,
    history: Vec<EventView>,
    previous: Option<(i64, String)>,
    superseded_by: Option<(i64, String)>,
    schemas: Vec<crate::agreements::schemas::Pending>,
    regulator: bool,
    operator: bool,
    today: String,
}
crate::impl_page!(ShowPage);

impl ShowPage {
    fn is(&self, code: &str) -> bool {
        self.a.state.as_str() == code
    }
    fn running(&self) -> bool {
        self.a.state.is_running()
    }
    fn ended(&self) -> bool {
        matches!(self.a.state, AgreementState::Ended(_))
    }
    fn pending_request(&self) -> bool {
        self.requests.iter().any(|r| r.pending)
    }
    fn schema_text(&self, p: &crate::agreements::schemas::Pending) -> String {
        self.page.t_args(
            "agreements.schema_pending",
            &[
                ("dataset", p.title.clone()),
                ("accepted", p.accepted.to_string()),
                ("current", p.current.to_string()),
            ],
        )
    }
    fn trial_text(&self) -> String {
        if self.a.trial_months == 0 {
            self.page.t("agreements.no_trial").to_owned()
        } else {
            self.page.t_args(
                "agreements.trial_months",
                &[("n", self.a.trial_months.to_string())],
            )
        }
    }
    fn price(&self, v: &Option<String>) -> String {
        v.as_deref()
            .map(model::money)
            .unwrap_or_else(|| self.page.t("agreements.not_agreed").to_owned())
    }
    fn example_cost(&self) -> String {
        let job = self
            .a
            .price_per_job
            .as_deref()
            .map(model::dec)
            .unwrap_or_default();
        let rows = self
            .a
            .price_per_thousand_rows
            .as_deref()
            .map(model::dec)
            .unwrap_or_default();
        let mut sum = job + rows;
        sum.rescale(2);
        sum.to_string()
    }
    fn period_key(&self) -> String {
        format!("agreements.period.{}", self.a.run_period)
    }
    fn days_left(&self, d: &Deadline) -> String {
        if d.overdue {
            self.page.t_args(
                "agreements.overdue_days",
                &[("n", (-d.days_left).to_string())],
            )
        } else {
            self.page
                .t_args("agreements.days_left", &[("n", d.days_left.to_string())])
        }
    }
}

pub(super) fn load_visible(
    conn: &mut crate::db::DbConnection,
    user: &CurrentUser,
    id: i64,
) -> Result<Agreement, AppError> {
    let a = model::find(conn, id)?.ok_or_else(AppError::not_found)?;
    let hidden_draft = a.state == AgreementState::Draft && !is_regulator(user);
    if !may_view(user, &a) || hidden_draft {
        return Err(AppError::not_found());
    }
    Ok(a)
}

/// `GET /agreements/{id}`: the agreement, its exit steps, its history, and the actions the
/// user may take.
pub async fn show(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<crate::detail::Id>,
) -> Result<HttpResponse, AppError> {
    let id = path.id;
    let today = state.clock.today();
    let u = user.clone();
    let (a, ds, rects, requests, history, (previous, superseded_by, schemas), cal) =
        db(&state, move |conn| {
            let a = load_visible(conn, &u, id)?;
            let ds = model::datasets_of(conn, id)?;
            let rects = model::rectifications_of(conn, id)?;
            let requests = model::requests_of(conn, id)?;
            let history: Vec<Entry> = audit_log::table
                .filter(audit_log::object_type.eq("agreement"))
                .filter(audit_log::object_id.eq(id.to_string()))
                .order(audit_log::id)
                .limit(1000)
                .select(Entry::as_select())
                .load(conn)?;
            let previous = match a.previous_id {
                Some(p) => agreements::table
                    .find(p)
                    .select((agreements::id, agreements::number))
                    .first(conn)
                    .optional()?,
                None => None,
            };
            let superseded_by = agreements::table
                .inner_join(agreement_signatures::table)
                .filter(agreements::previous_id.eq(id))
                .filter(agreement_signatures::sealed_at.is_not_null())
                .select((agreements::id, agreements::number))
                .first(conn)
                .optional()?;
            let cal = Calendar::load(conn)?;
            let schemas = if a.state.is_running() {
                crate::agreements::schemas::pending(conn, &a)?
            } else {
                Vec::new()
            };
            Ok((
                a,
                ds,
                rects,
                requests,
                history,
                (previous, superseded_by, schemas),
                cal,
            ))
        })
        .await?;
    let st = a.state;
    let rects = rects
        .into_iter()
        .map(|r| {
            let rs = r.state;
            RectView {
                state_key: rs.label_key(),
                open: rs == RectificationState::Ordered,
                answered: rs == RectificationState::Answered,
                deadline: cal.deadline(today, r.due_on),
                r,
            }
        })
        .collect();
    let requests = requests
        .into_iter()
        .map(|r| {
            let rs = r.state;
            RequestView {
                state_key: rs.label_key(),
                pending: rs == RequestState::Pending,
                r,
            }
        })
        .collect();
    let history = history
        .into_iter()
        .map(|e| EventView {
            at: page.time(e.at),
            actor: e.actor_name,
            action_key: format!(
                "agreements.event.{}",
                e.action.trim_start_matches("agreement.")
            ),
            details: crate::supervision::details::render(page.lang, page.zone, &e.details),
        })
        .collect();
    render(&ShowPage {
        regulator: is_regulator(&user),
        operator: user.org_id == a.operator_org_id && user.has_role(&[Role::Enterprise]),
        page,
        state_key: st.label_key(),
        badge: badge(st),
        a,
        ds,
        rects,
        requests,
        history,
        previous,
        superseded_by,
        schemas,
        today: today.to_string(),
    })
}

#[derive(Template)]
#[template(path = "agreements/print.html")]
pub(super) struct PrintPage {
    page: Page,
    a: Agreement,
    ds: Vec<AgreementDataset>,
    state_key: String,
    canonical: String,
    signature_b64: String,
}
crate::impl_page!(PrintPage);

impl PrintPage {
    fn price(&self, v: &Option<String>) -> String {
        v.as_deref()
            .map(model::money)
            .unwrap_or_else(|| self.page.t("agreements.not_agreed").to_owned())
    }
    fn period_key(&self) -> String {
        format!("agreements.period.{}", self.a.run_period)
    }
}

/// `GET /agreements/{id}/print`: the printable agreement with number, text, hash, signature
/// and the seal's public key.
pub async fn print(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    use base64::Engine as _;
    let id = path.into_inner();
    let (a, ds, canonical) = db(&state, move |conn| {
        let a = load_visible(conn, &user, id)?;
        let ds = model::datasets_of(conn, id)?;
        let canonical = model::canonical_of(conn, &a)?;
        Ok((a, ds, canonical))
    })
    .await?;
    let signature_b64 = a
        .signature
        .as_deref()
        .and_then(|s| hex::decode(s).ok())
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .unwrap_or_default();
    render(&PrintPage {
        page,
        state_key: a.state.label_key(),
        canonical: if a.sealed_at.is_some() {
            canonical
        } else {
            String::new()
        },
        a,
        ds,
        signature_b64,
    })
}

/// `GET /agreements/{id}/canonical`: the canonical text of a sealed agreement (what the seal
/// signed), for verification elsewhere.
pub async fn canonical(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let text = db(&state, move |conn| {
        let a = load_visible(conn, &user, id)?;
        if a.sealed_at.is_none() {
            return Err(AppError::conflict("agreements.refuse.not_sealed"));
        }
        Ok(model::canonical_of(conn, &a)?)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(text))
}
