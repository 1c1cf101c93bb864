//! The demo jobs: `alpha`'s member is trained, example (a) of the sandbox has been approved,
//! run and released (its chart and downloads are on its page), and a changed version of it
//! waits for approval (its page names the approved hash it differs from). Made through the
//! same operations as the web pages. Idempotent: nothing happens once `alpha` has a
//! computation, or when the demo agreement is missing.

use chrono::Duration;
use diesel::prelude::*;

use super::{model, ops, submit, worker};
use crate::AppState;
use crate::accounts::model as accounts;
use crate::auth::{CurrentUser, Role};
use crate::schema::{computations, organisations};

/// Example (a) of the sandbox: visits by district for patients aged 65 and over (WAT).
pub const EXAMPLE_MODULE: &str = include_str!("../../sandbox/guest/examples/a_visits_65plus.wat");
/// Its manifest.
pub const EXAMPLE_MANIFEST: &str =
    include_str!("../../sandbox/guest/examples/a_visits_65plus.toml");

fn as_current(
    conn: &mut crate::db::DbConnection,
    username: &str,
) -> anyhow::Result<Option<CurrentUser>> {
    let Some(u) = accounts::find_user_by_name(conn, username)? else {
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

/// A demo user as the operations expect it.
pub(crate) fn user(
    conn: &mut crate::db::DbConnection,
    username: &str,
) -> anyhow::Result<CurrentUser> {
    as_current(conn, username)?.ok_or_else(|| anyhow::anyhow!("demo user {username} is missing"))
}

fn err(e: crate::errors::AppError) -> anyhow::Error {
    anyhow::anyhow!("demo jobs: {e}")
}

/// Checks and records a submission of `module` with the example manifest as `alpha`.
pub(crate) fn submit_demo(
    state: &AppState,
    conn: &mut crate::db::DbConnection,
    alpha: &CurrentUser,
    module: &str,
    purpose: &str,
) -> anyhow::Result<ops::Submitted> {
    let rt = state
        .sandbox
        .runtime(&state.config.data_dir, &state.secrets)?;
    let sub = submit::Submission {
        module: module.as_bytes().to_vec(),
        manifest: EXAMPLE_MANIFEST.to_owned(),
        purpose: purpose.to_owned(),
        bindings: Default::default(),
    };
    let loaded = submit::load(&rt, sub);
    let cx = ops::SubmitContext {
        limits: rt.limits(),
        data_dir: &state.config.data_dir,
        scratch: &state.scratch,
        reviewer: super::reviewer_role(state),
    };
    ops::submit(
        conn,
        alpha,
        &loaded,
        &cx,
        state.clock.today(),
        state.clock.now(),
    )
    .map_err(err)?
    .map_err(|p| anyhow::anyhow!("demo job refused: {p:?}"))
}

/// Seeds the demo jobs (needs the demo accounts, dataset and agreement).
pub fn seed(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.pool.get()?;
    let reviewer_name = match super::reviewer_role(state) {
        Role::PlatformAdmin => "platform",
        _ => "regulator",
    };
    let (Some(alpha), Some(platform), Some(reviewer)) = (
        as_current(&mut conn, "alpha")?,
        as_current(&mut conn, "platform")?,
        as_current(&mut conn, reviewer_name)?,
    ) else {
        return Ok(());
    };
    let today = state.clock.today();
    if crate::agreements::datasets_in_force(&mut conn, alpha.org_id, today)?.is_empty() {
        return Ok(());
    }
    let has: i64 = computations::table
        .filter(computations::org_id.eq(alpha.org_id))
        .count()
        .get_result(&mut conn)?;
    if has > 0 {
        return Ok(());
    }
    let now = state.clock.now();
    if !model::trained(&mut conn, alpha.id, today)? {
        ops::record_training(
            &mut conn,
            &platform,
            "alpha",
            "公共数据安全与合规培训 / Public data security and compliance",
            today - Duration::days(30),
            today + Duration::days(335),
            now,
        )
        .map_err(err)?;
    }
    let first = submit_demo(
        state,
        &mut conn,
        &alpha,
        EXAMPLE_MODULE,
        "各区 65 岁及以上患者门诊量，用于老年医疗资源配置 / Visits of patients aged 65 and over by district, for allocating geriatric care",
    )?;
    ops::decide_computation(&mut conn, &reviewer, first.computation_id, None, now).map_err(err)?;
    drop(conn);
    while worker::run_once(state, "demo")? {}
    let mut conn = state.pool.get()?;
    ops::release(
        &mut conn,
        &reviewer,
        first.job_id,
        &state.seal,
        today,
        state.clock.now(),
        state.clock.zone(),
    )
    .map_err(err)?;
    let changed = EXAMPLE_MODULE.replace(";; (a)", ";; (a, revised)");
    submit_demo(
        state,
        &mut conn,
        &alpha,
        &changed,
        "修订版：同一统计，改进批处理 / Revised: the same statistic with better batching",
    )?;
    Ok(())
}
