//! The admission part of the demo world: a published call for medical-health data offering the
//! demo dataset, and an application from `beta` submitted and waiting for review. Idempotent:
//! what exists is kept.

use diesel::prelude::*;

use super::machine::{ApplicationState, CallState};
use super::model;
use crate::AppState;
use crate::calendar::Calendar;
use crate::catalog::demo::DEMO_TITLE_EN;
use crate::catalog::model::Category;
use crate::schema::{application_datasets, applications, calls, datasets, organisations, users};
use crate::supervision::audit::{self, Actor};

/// English title that identifies the demo call.
pub const DEMO_CALL_TITLE_EN: &str = "Call for authorized operation of medical and health data";

/// Seeds the demo call and `beta`'s application (after the accounts and the demo dataset).
pub fn seed(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.pool.get()?;
    let now = crate::db::to_micros(state.clock.now());
    let today = state.clock.local(now).date();
    let review_days = state.config.review_days;
    crate::db::write_transaction(&mut conn, |conn| {
        let Some(dataset_id) = datasets::table
            .filter(datasets::title_en.eq(DEMO_TITLE_EN))
            .select(datasets::id)
            .first::<i64>(conn)
            .optional()?
        else {
            return Ok(());
        };
        let Some(regulator) = users::table
            .filter(users::username.eq("regulator"))
            .select(users::id)
            .first::<i64>(conn)
            .optional()?
        else {
            return Ok(());
        };
        let existing: Option<i64> = calls::table
            .filter(calls::title_en.eq(DEMO_CALL_TITLE_EN))
            .select(calls::id)
            .first(conn)
            .optional()?;
        let call_id = match existing {
            Some(id) => id,
            None => {
                let id: i64 = diesel::insert_into(calls::table)
                    .values((
                        calls::domain.eq(Category::MedicalServices.as_str()),
                        calls::title_zh.eq("医疗健康公共数据授权运营申请通告"),
                        calls::title_en.eq(DEMO_CALL_TITLE_EN),
                        calls::body_zh.eq("为促进医疗健康公共数据有序开发利用，现面向社会公开征集授权运营单位。申请单位应具备相应的数据安全保障能力，在平台内完成数据加工处理，仅输出经审核的统计结果。"),
                        calls::body_en.eq("To promote the orderly use of public medical and health data, the authority invites applications for authorized operation. Applicants must have adequate data-security capabilities, process the data on the platform, and release only reviewed statistics."),
                        calls::scenarios.eq("商业健康保险精算 / Health insurance pricing\n医疗服务质量评价 / Quality of care evaluation\n公共卫生研究 / Public health research"),
                        calls::conditions.eq("依法设立且信用良好；通过网络安全等级保护二级以上测评；设有数据安全负责人。\nLawfully established with a good credit record; certified at level 2 or above of the multi-level protection scheme; a named data-security officer."),
                        calls::opens_on.eq(today),
                        calls::closes_on.eq(today + chrono::Duration::days(60)),
                        calls::state.eq(CallState::Published.as_str()),
                        calls::created_by.eq(regulator),
                        calls::created_at.eq(now),
                        calls::updated_at.eq(now),
                        calls::published_at.eq(Some(now)),
                    ))
                    .returning(calls::id)
                    .get_result(conn)?;
                model::set_call_datasets(conn, id, &[dataset_id])?;
                audit::record(
                    conn,
                    &Actor::system(),
                    "call.publish",
                    "call",
                    &id.to_string(),
                    serde_json::json!({ "via": "demo" }),
                )?;
                id
            }
        };
        let beta = users::table
            .inner_join(organisations::table)
            .filter(users::username.eq("beta"))
            .select((users::id, organisations::id))
            .first::<(i64, i64)>(conn)
            .optional()?;
        let Some((beta_user, beta_org)) = beta else {
            return Ok(());
        };
        let has_app: bool = diesel::select(diesel::dsl::exists(
            applications::table
                .filter(applications::call_id.eq(call_id))
                .filter(applications::org_id.eq(beta_org)),
        ))
        .get_result(conn)?;
        if has_app {
            return Ok(());
        }
        let org = crate::accounts::model::find_org(conn, beta_org)?
            .ok_or_else(|| anyhow::anyhow!("demo organisation of beta missing"))?;
        let due = Calendar::load(conn)?.add_working_days(today, review_days);
        let id: i64 = diesel::insert_into(applications::table)
            .values((
                applications::call_id.eq(call_id),
                applications::org_id.eq(beta_org),
                applications::created_by.eq(beta_user),
                applications::state.eq(ApplicationState::Submitted.as_str()),
                applications::scenario.eq("公共卫生研究 / Public health research"),
                applications::created_at.eq(now),
                applications::updated_at.eq(now),
                applications::submitted_at.eq(Some(now)),
                applications::org_name.eq(&org.name),
                applications::credit_code.eq(org.credit_code.clone().unwrap_or_default()),
                applications::legal_representative.eq(&org.legal_representative),
                applications::contact_name.eq(&org.contact_name),
                applications::contact_phone.eq(&org.contact_phone),
                applications::address.eq(&org.address),
                applications::evidence_basic
                    .eq("公司依法设立，近三年无重大违法记录；已建立数据安全管理制度。"),
                applications::evidence_technical
                    .eq("已通过网络安全等级保护三级测评；数据仅在平台沙箱内处理。"),
                applications::evidence_scenario.eq("面向区县卫生健康部门提供门诊负担统计分析。"),
                applications::evidence_domain
                    .eq("遵守医疗卫生数据管理规定，结果仅含汇总统计且满足最小单元数要求。"),
                applications::declared.eq(true),
                applications::review_due_on.eq(Some(due)),
            ))
            .returning(applications::id)
            .get_result(conn)?;
        diesel::insert_into(application_datasets::table)
            .values((
                application_datasets::application_id.eq(id),
                application_datasets::dataset_id.eq(dataset_id),
                application_datasets::purpose.eq("按区县与疾病章节统计门诊人次与费用负担 / Outpatient visits and costs by district and ICD-10 chapter"),
            ))
            .execute(conn)?;
        let actor = Actor {
            user_id: Some(beta_user),
            name: "beta".into(),
            org_id: Some(beta_org),
            addr: "local".into(),
        };
        model::record_event(
            conn,
            id,
            &actor,
            "submit",
            (ApplicationState::Draft, ApplicationState::Submitted),
            "",
            now,
        )?;
        audit::record(
            conn,
            &actor,
            "application.submit",
            "application",
            &id.to_string(),
            serde_json::json!({ "from": "draft", "to": "submitted", "via": "demo" }),
        )?;
        Ok::<_, anyhow::Error>(())
    })
}
