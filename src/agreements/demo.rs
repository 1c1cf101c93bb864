//! The demo agreement: `alpha` holds a sealed agreement in force on the demo dataset, made
//! through the same operations as the web pages (draft, submit, operator signature, seal).
//! Idempotent: nothing happens once `alpha` has an agreement.

use chrono::Datelike as _;
use diesel::prelude::*;

use super::forms::Terms;
use super::ops;
use crate::AppState;
use crate::accounts::model;
use crate::auth::{CurrentUser, Role};
use crate::schema::{
    agreements, application_datasets, applications, call_datasets, calls, datasets, organisations,
};
use crate::supervision::audit::{self, Actor};

fn as_current(
    conn: &mut crate::db::DbConnection,
    username: &str,
) -> anyhow::Result<Option<CurrentUser>> {
    let Some(u) = model::find_user_by_name(conn, username)? else {
        return Ok(None);
    };
    let (org_name, org_kind): (String, String) = organisations::table
        .find(u.org_id)
        .select((organisations::name, organisations::kind))
        .first(conn)?;
    let role = Role::parse(&u.role).ok_or_else(|| anyhow::anyhow!("bad role of {username}"))?;
    Ok(Some(CurrentUser {
        id: u.id,
        username: u.username,
        display_name: u.display_name,
        role,
        org_id: u.org_id,
        org_name,
        org_kind,
        session_id: String::new(),
        via_token: false,
        addr: "local".into(),
    }))
}

/// Inserts an earlier, closed call (the first round) and an admitted application of `org_id`
/// for `dataset_id` directly, as the admission workflow would have left them (the demo's
/// stand-in for admission steps 1–4; `beta`'s application goes through the real steps).
pub fn seed_admitted_application(
    conn: &mut crate::db::DbConnection,
    regulator: &CurrentUser,
    org_id: i64,
    applicant_user: i64,
    dataset_id: i64,
    today: chrono::NaiveDate,
    now: chrono::NaiveDateTime,
) -> anyhow::Result<i64> {
    let org = crate::accounts::model::find_org(conn, org_id)?
        .ok_or_else(|| anyhow::anyhow!("demo organisation {org_id} missing"))?;
    crate::db::write_transaction(conn, |conn| {
        let call_id: i64 = diesel::insert_into(calls::table)
            .values((
                calls::domain.eq("medical_health"),
                calls::title_zh.eq("医疗健康公共数据授权运营申请通告（第一批）"),
                calls::title_en
                    .eq("Call for authorized operation of medical-health data (first round)"),
                calls::opens_on.eq(today - chrono::Duration::days(60)),
                calls::closes_on.eq(today - chrono::Duration::days(30)),
                calls::state.eq("closed"),
                calls::created_by.eq(regulator.id),
                calls::created_at.eq(now),
                calls::updated_at.eq(now),
                calls::published_at.eq(now),
            ))
            .returning(calls::id)
            .get_result(conn)?;
        diesel::insert_into(call_datasets::table)
            .values((
                call_datasets::call_id.eq(call_id),
                call_datasets::dataset_id.eq(dataset_id),
            ))
            .execute(conn)?;
        let app_id: i64 = diesel::insert_into(applications::table)
            .values((
                applications::call_id.eq(call_id),
                applications::org_id.eq(org_id),
                applications::created_by.eq(applicant_user),
                applications::state.eq(crate::admission::machine::ApplicationState::Admitted.as_str()),
                applications::scenario.eq("门诊服务质量分析 / Outpatient service quality analysis"),
                applications::created_at.eq(now),
                applications::updated_at.eq(now),
                applications::submitted_at.eq(now),
                applications::decided_at.eq(now),
                applications::admitted_at.eq(now),
                applications::org_name.eq(&org.name),
                applications::credit_code.eq(org.credit_code.clone().unwrap_or_default()),
                applications::legal_representative.eq(&org.legal_representative),
                applications::contact_name.eq(&org.contact_name),
                applications::contact_phone.eq(&org.contact_phone),
                applications::address.eq(&org.address),
                applications::evidence_basic.eq("等保三级测评报告；数据安全管理制度 / MLPS level 3 report; data security policy"),
                applications::evidence_technical.eq("隐私计算平台内运行，仅取得聚合结果 / Runs inside the platform sandbox; aggregates only"),
                applications::evidence_scenario.eq("区级门诊资源配置分析 / District outpatient resource planning"),
                applications::evidence_domain.eq("医疗健康数据安全管理规范培训 / Health-data security training"),
                applications::declared.eq(true),
            ))
            .returning(applications::id)
            .get_result(conn)?;
        diesel::insert_into(application_datasets::table)
            .values((
                application_datasets::application_id.eq(app_id),
                application_datasets::dataset_id.eq(dataset_id),
                application_datasets::purpose.eq("分析各区门诊负担 / Outpatient load by district"),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            &Actor::system(),
            "application.demo_admitted",
            "application",
            &app_id.to_string(),
            serde_json::json!({ "via": "demo" }),
        )?;
        Ok::<_, anyhow::Error>(app_id)
    })
}

/// Seeds alpha's sealed agreement in force (needs the demo accounts and dataset).
pub fn seed(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.pool.get()?;
    let (Some(regulator), Some(alpha)) = (
        as_current(&mut conn, "regulator")?,
        as_current(&mut conn, "alpha")?,
    ) else {
        return Ok(());
    };
    let has: i64 = agreements::table
        .filter(agreements::operator_org_id.eq(alpha.org_id))
        .count()
        .get_result(&mut conn)?;
    if has > 0 {
        return Ok(());
    }
    let Some(dataset_id) = datasets::table
        .filter(datasets::title_en.eq(crate::catalog::demo::DEMO_TITLE_EN))
        .select(datasets::id)
        .first::<i64>(&mut conn)
        .optional()?
    else {
        return Ok(());
    };
    let today = state.clock.today();
    let app_id = seed_admitted_application(
        &mut conn,
        &regulator,
        alpha.org_id,
        alpha.id,
        dataset_id,
        today,
        crate::db::to_micros(state.clock.now()),
    )?;
    let terms = Terms {
        datasets: vec![(dataset_id, "1".into())],
        purpose:
            "分析各区门诊负担，为医疗资源配置提供参考 / Analyse outpatient load by district to \
                  inform the allocation of medical resources"
                .into(),
        scenario: "门诊服务质量分析 / Outpatient service quality analysis".into(),
        security_measures: "仅在平台沙箱内计算；输出经差分隐私处理；人员经安全培训 / Computation \
                            only in the platform sandbox; outputs under differential privacy; \
                            trained staff"
            .into(),
        disposal: "协议终止后 10 个工作日内删除全部衍生数据并提交确认 / Delete all derived data \
                   within 10 working days of the end and file a confirmation"
            .into(),
        trial_months: 3,
        price_per_job: Some("0.50".into()),
        price_per_thousand_rows: Some("0.20".into()),
        split: ("20".into(), "30".into(), "50".into()),
        run_budget: 200,
        run_period: "month".into(),
    };
    let now = state.clock.now();
    let id = ops::create_draft(&mut conn, &regulator, app_id, &terms, now, today.year())
        .map_err(|e| anyhow::anyhow!("demo agreement: {e}"))?;
    ops::submit(&mut conn, &regulator, id, now).map_err(|e| anyhow::anyhow!("{e}"))?;
    ops::operator_sign(&mut conn, &alpha, id, &alpha.org_name, now)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ops::seal(&mut conn, &regulator, id, now, today, &state.seal)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Sets every agreement's run budget to `runs` per period (benchmarks, which run the demo
/// job many times).
pub fn set_run_budgets(state: &AppState, runs: i32) -> anyhow::Result<()> {
    let mut conn = state.pool.get()?;
    diesel::update(agreements::table)
        .set(agreements::run_budget.eq(runs))
        .execute(&mut conn)?;
    Ok(())
}
