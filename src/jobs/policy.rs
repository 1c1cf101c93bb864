//! The platform's release policy (ABI v2, guarantees 5 and 6) on the platform side: the
//! sandbox's limits under the configuration (`grade_policy`, `dominance_share`).

use dataop_sandbox::Limits;

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
