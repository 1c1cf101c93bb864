//! The demo world seeded by `serve --demo`: the parties of DOMAIN.md, one user each, and the
//! catalog's demo dataset. Seeding is idempotent: what exists is kept.

pub mod outpatients;

use diesel::prelude::*;

use crate::AppState;
use crate::accounts::credit_code;
use crate::accounts::model::{self, NewOrganisation, NewUser, OrgKind};
use crate::auth::password;
use crate::db;
use crate::schema::organisations;
use crate::supervision::audit::{self, Actor};

/// The password of every demo account (demo mode only).
pub const DEMO_PASSWORD: &str = "dataop-demo";

/// One demo organisation with its one user.
struct DemoParty {
    org: &'static str,
    kind: OrgKind,
    code_prefix: Option<&'static str>,
    username: &'static str,
    display_name: &'static str,
}

const PARTIES: &[DemoParty] = &[
    DemoParty {
        org: "市数据资源管理局（公共数据主管部门）",
        kind: OrgKind::Regulator,
        code_prefix: Some("1133010000248761"),
        username: "regulator",
        display_name: "王监管",
    },
    DemoParty {
        org: "市卫生健康委员会",
        kind: OrgKind::Provider,
        code_prefix: Some("1133010000250193"),
        username: "provider",
        display_name: "李数据",
    },
    DemoParty {
        org: "市公共数据运营有限公司（平台运营主体）",
        kind: OrgKind::Platform,
        code_prefix: Some("9133010631000017"),
        username: "platform",
        display_name: "张平台",
    },
    DemoParty {
        org: "公共数据授权运营专家咨询委员会",
        kind: OrgKind::ExpertPanel,
        code_prefix: None,
        username: "expert",
        display_name: "陈专家",
    },
    DemoParty {
        org: "阿尔法健康科技有限公司",
        kind: OrgKind::Enterprise,
        code_prefix: Some("9133010670000023"),
        username: "alpha",
        display_name: "赵阿尔法",
    },
    DemoParty {
        org: "贝塔医疗数据服务有限公司",
        kind: OrgKind::Enterprise,
        code_prefix: Some("9133010870000045"),
        username: "beta",
        display_name: "钱贝塔",
    },
];

/// Seeds the demo organisations and users (skipping those that exist).
pub fn seed_accounts(state: &AppState) -> anyhow::Result<()> {
    let mut conn = state.pool.get()?;
    let hash = password::hash(DEMO_PASSWORD)?;
    for p in PARTIES {
        if model::find_user_by_name(&mut conn, p.username)?.is_some() {
            continue;
        }
        let code = match p.code_prefix {
            Some(prefix) => Some(
                credit_code::complete(prefix)
                    .ok_or_else(|| anyhow::anyhow!("bad demo credit code prefix {prefix}"))?,
            ),
            None => None,
        };
        let now = db::to_micros(state.clock.now());
        db::write_transaction(&mut conn, |conn| {
            let existing: Option<i64> = organisations::table
                .filter(organisations::name.eq(p.org))
                .select(organisations::id)
                .first(conn)
                .optional()?;
            let org_id = match existing {
                Some(id) => id,
                None => {
                    let mut org = NewOrganisation::simple(p.org, p.kind, now);
                    org.credit_code = code.clone();
                    org.legal_representative = p.display_name.to_owned();
                    org.contact_name = p.display_name.to_owned();
                    org.contact_phone = "0571-00000000".to_owned();
                    org.address = "浙江省杭州市".to_owned();
                    org.email = format!("{}@demo.dataop.invalid", p.username);
                    let id = org.insert(conn)?;
                    audit::record(
                        conn,
                        &Actor::system(),
                        "organisation.create",
                        "organisation",
                        &id.to_string(),
                        serde_json::json!({ "name": p.org, "kind": p.kind.as_str(), "via": "demo" }),
                    )?;
                    id
                }
            };
            let user = NewUser::new(
                org_id,
                p.username,
                p.display_name,
                hash.clone(),
                p.kind.default_role(),
                now,
            );
            let id = user.insert(conn)?;
            audit::record(
                conn,
                &Actor::system(),
                "user.create",
                "user",
                &id.to_string(),
                serde_json::json!({ "username": p.username, "role": user.role, "via": "demo" }),
            )?;
            Ok::<_, anyhow::Error>(())
        })?;
    }
    Ok(())
}

/// Seeds the whole demo world once: accounts, the catalog's demo dataset, the demo call and
/// `beta`'s application, `alpha`'s agreement in force, then `alpha`'s demo jobs (one released,
/// one waiting for approval).
pub fn seed(state: &AppState) -> anyhow::Result<()> {
    seed_accounts(state)?;
    crate::catalog::demo::seed(state, "provider")?;
    crate::admission::demo::seed(state)?;
    crate::agreements::demo::seed(state)?;
    crate::jobs::demo::seed(state)
}

/// Prints the demo accounts.
pub fn print_accounts() {
    println!("demo accounts (password: {DEMO_PASSWORD}):");
    for p in PARTIES {
        println!(
            "  {:<10} {} — {}",
            p.username,
            p.kind.default_role().as_str(),
            p.org
        );
    }
}
