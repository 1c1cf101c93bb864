//! The platform's release policy (ABI v2, guarantees 5 and 6) on the platform side: the
//! sandbox's limits under the configuration (`grade_policy`, `dominance_share`), and the policy
//! checked again when a run starts, against the grades its datasets have then.
//!
//! The policy is checked when the operator submits (`submit::check`) and by the sandbox before
//! anything runs; a dataset's grade or the configuration may change after the approval, so the
//! worker checks again at the start and names the rule and the grade to the operator. Such a
//! refusal carries nothing the module chose: only the approved manifest, the grades and the
//! platform's settings.

use dataop_sandbox::manifest::{PolicyBreach, check_policy};
use dataop_sandbox::{Limits, Manifest};

use super::model::{self, VersionUsed};
use crate::config::Config;

/// The sandbox's limits under `config`: the platform defaults with the configured release
/// policy per grade and dominance share.
pub fn limits(config: &Config) -> Limits {
    Limits {
        grades: config.grade_policy,
        dominance_share: config.dominance_share,
        ..Limits::default()
    }
}

/// Why the release policy of the grades of the run's datasets (`used`, as pinned at its start)
/// forbids the run's `manifest`: a stored reason (`jobs.why.policy_<rule>` with the grade, the
/// dataset's manifest name and the rule's figures, [`model::why`]); `None` when it allows it.
/// A k below a grade's minimum is no refusal here: the sandbox raises it.
pub fn refusal_at_start(limits: &Limits, manifest: &str, used: &[VersionUsed]) -> Option<String> {
    let m = Manifest::from_toml(manifest).ok()?;
    let grade_of = |name: &str| {
        used.iter()
            .find(|v| v.name == name)
            .map(|v| u8::try_from(v.grade).unwrap_or(4))
    };
    let r = check_policy(&m, &grade_of, limits)
        .into_iter()
        .find(|r| !matches!(r.breach, PolicyBreach::MinK { .. }))?;
    Some(model::why(
        &format!("jobs.why.policy_{}", r.rule()),
        &r.args(),
    ))
}
