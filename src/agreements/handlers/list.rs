//! The operator's agreements and the regulator's queues and list.

use super::*;

#[derive(Template)]
#[template(path = "agreements/list.html")]
pub(super) struct ListPage {
    page: Page,
    rows: Vec<Row>,
}
crate::impl_page!(ListPage);

/// `GET /agreements`: the operator's agreements.
pub async fn my_list(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if is_regulator(&user) {
        return Ok(redirect("/admin/agreements"));
    }
    let org = user.org_id;
    let list = db(&state, move |conn| {
        let rows = agreements::table
            .filter(agreements::operator_org_id.eq(org))
            .filter(agreements::state.ne(AgreementState::Draft.as_str()))
            .order(agreements::id.desc())
            .limit(LIST_LIMIT)
            .select(AgreementRow::as_select())
            .load(conn)?;
        Ok(model::complete(conn, rows)?)
    })
    .await?;
    render(&ListPage {
        page,
        rows: list.iter().map(row).collect(),
    })
}

/// A queue item as shown.
#[derive(Debug, Clone)]
pub struct QueueRow {
    /// Label.
    pub label: String,
    /// Link.
    pub href: String,
    /// State label key.
    pub state_key: &'static str,
    /// Deadline.
    pub deadline: Option<Deadline>,
}

/// A queue as shown.
#[derive(Debug, Clone)]
pub struct QueueView {
    /// Title key.
    pub title_key: &'static str,
    /// Items, overdue first.
    pub items: Vec<QueueRow>,
}

#[derive(Template)]
#[template(path = "agreements/admin.html")]
pub(super) struct AdminPage {
    page: Page,
    queues: Vec<QueueView>,
    to_draft: Vec<(i64, String)>,
    rows: Vec<Row>,
}
crate::impl_page!(AdminPage);

impl AdminPage {
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

/// `GET /admin/agreements`: the regulator's queues, the applications to draft from, and every
/// agreement.
pub async fn admin_list(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    user.require(&[Role::Regulator])?;
    let today = state.clock.today();
    let (sections, to_draft, list) = db(&state, move |conn| {
        let cal = Calendar::load(conn)?;
        let mut sections = queues::sections(conn, &cal, today)?;
        for s in &mut sections {
            s.items.sort_by(|a, b| match (&a.deadline, &b.deadline) {
                (Some(x), Some(y)) => Deadline::queue_order(x, y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        }
        let to_draft = ops::admitted_without_agreement(conn)?;
        let rows = agreements::table
            .order(agreements::id.desc())
            .limit(LIST_LIMIT)
            .select(AgreementRow::as_select())
            .load(conn)?;
        let list = model::complete(conn, rows)?;
        Ok((sections, to_draft, list))
    })
    .await?;
    let queues = sections
        .into_iter()
        .map(|s| QueueView {
            title_key: s.title_key,
            items: s
                .items
                .into_iter()
                .map(|i| QueueRow {
                    label: i.label,
                    href: i.href,
                    state_key: i.state_key,
                    deadline: i.deadline,
                })
                .collect(),
        })
        .collect();
    render(&AdminPage {
        page,
        queues,
        to_draft,
        rows: list.iter().map(row).collect(),
    })
}
