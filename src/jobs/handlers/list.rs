//! The run list (`/jobs`, the reviewer's and the regulator's too) with the privacy and run budgets.

use super::*;

/// A privacy budget line.
#[derive(Debug, Clone)]
pub struct BudgetView {
    /// The operator.
    pub operator: String,
    /// Agreement number.
    pub agreement: String,
    /// Dataset title in the page language.
    pub dataset: String,
    /// Budget.
    pub budget: String,
    /// Spent.
    pub spent: String,
    /// Remaining.
    pub remaining: String,
}

#[derive(Template)]
#[template(path = "jobs/list.html")]
pub(super) struct ListPage {
    page: Page,
    rows: Vec<RowView>,
    budgets: Vec<BudgetView>,
    run_budgets: Vec<ops::RunBudgetLine>,
    outstanding: Vec<i64>,
    operator: bool,
}
crate::impl_page!(ListPage);

impl ListPage {
    fn period_key(&self, b: &ops::RunBudgetLine) -> String {
        format!("agreements.period.{}", b.period)
    }
}

/// `GET /jobs`: an operator's runs, budgets and outstanding usage reports; every run for the
/// regulator and the platform admin.
pub async fn list(
    page: Page,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let operator = !crate::jobs::sees_all(&user);
    if operator && user.role != Role::Enterprise {
        return Err(AppError::forbidden());
    }
    let org = user.org_id;
    let now = state.clock.now();
    let (rows, budgets, run_budgets, outstanding) = db(&state, move |conn| {
        let rows = model::job_rows(conn, operator.then_some(org), None, LIST_LIMIT)?;
        let budgets = ops::budgets(conn, operator.then_some(org))?;
        let run_budgets = ops::run_budgets(conn, operator.then_some(org), now)?;
        let outstanding = model::outstanding_usage(conn, operator.then_some(org))?;
        Ok((rows, budgets, run_budgets, outstanding))
    })
    .await?;
    render(&ListPage {
        budgets: budget_views(budgets, page.lang),
        rows: rows
            .into_iter()
            .map(|r| row_view(&page, r, !operator))
            .collect(),
        page,
        run_budgets,
        outstanding,
        operator,
    })
}

pub(super) fn budget_views(rows: Vec<ops::BudgetLine>, lang: Lang) -> Vec<BudgetView> {
    rows.into_iter()
        .map(|b| BudgetView {
            dataset: crate::i18n::pick(lang, &b.dataset, &b.dataset_en).to_owned(),
            operator: b.operator,
            agreement: b.agreement,
            budget: b.budget.normalize().to_string(),
            spent: b.spent.normalize().to_string(),
            remaining: (b.budget - b.spent).normalize().to_string(),
        })
        .collect()
}
