//! Runtime configuration.
//!
//! Every setting can come from, in order of precedence: a command-line flag, a `DATAOP_*`
//! environment variable (clap reads both), an optional TOML file given with `--config`
//! (`DATAOP_CONFIG`), or the built-in default. See the README for the full list.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use dataop_sandbox::Limits;
use dataop_sandbox::manifest::ReleasePolicy;
use serde::Deserialize;

/// The keys allowed in the TOML configuration file; all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub bind: Option<String>,
    /// Directory holding the SQLite database, secrets and dataset versions.
    pub data_dir: Option<PathBuf>,
    /// `sqlite://path` or `postgres://user:pass@host/db`.
    pub database_url: Option<String>,
    /// Session-signing secret; generated and kept in the data dir when absent.
    pub secret_key: Option<String>,
    /// Mark cookies `Secure` (set when the site is served over https).
    pub secure_cookies: Option<bool>,
    /// Lifetime of a browser session, in hours.
    pub session_hours: Option<i64>,
    /// Lifetime of an API token, in days.
    pub token_days: Option<i64>,
    /// Largest accepted upload, in bytes.
    pub upload_limit_bytes: Option<u64>,
    /// Failed logins allowed per account within the throttle window.
    pub login_max_failures_account: Option<u32>,
    /// Failed logins allowed per source address within the throttle window.
    pub login_max_failures_address: Option<u32>,
    /// Throttle window, in seconds.
    pub login_window_secs: Option<u64>,
    /// How often the scheduler runs timed work (deadlines, expiry, mail), in seconds.
    pub scheduler_interval_secs: Option<u64>,
    /// Outgoing mail server: `smtp://host:port` (plain), `smtp://host:port?tls=required`
    /// (STARTTLS) or `smtps://user:pass@host` (TLS); absent: messages are written as `.eml`
    /// files under `<data_dir>/outbox/`.
    pub smtp_url: Option<String>,
    /// The `From` address of outgoing mail.
    pub mail_from: Option<String>,
    /// Working days the regulator has to review a submitted application.
    pub review_days: Option<u32>,
    /// Working days an assigned expert has to file an opinion.
    pub expert_days: Option<u32>,
    /// Working days an approved application stays on public notice.
    pub notice_days: Option<u32>,
    /// Working days the regulator has to decide an objection.
    pub objection_days: Option<u32>,
    /// Who reviews computations and their outputs: `regulator` (default) or `platform`.
    pub job_reviewer: Option<String>,
    /// Job workers `dataop serve` runs in-process (default 2; 0 leaves the work to
    /// `dataop worker` processes).
    pub job_workers: Option<usize>,
    /// Seconds a worker's lease on a running job lasts before another worker may take it over.
    pub job_lease_secs: Option<u64>,
    /// Milliseconds an idle worker waits before it looks at the queue again (runs queued in
    /// its own process wake it at once).
    pub job_poll_ms: Option<u64>,
    /// The time zone every page, mail and download shows times in (an IANA name such as
    /// `Asia/Shanghai`, the default); dates of deadlines are dates in this zone.
    pub time_zone: Option<String>,
    /// Without differential privacy, a cell's sums and means are withheld when one person
    /// makes up more than this share of a measure's total (in (0, 1]; default 0.5).
    pub dominance_share: Option<f64>,
    /// The release policy per dataset grade: tables `[grade_policy.1]` to `[grade_policy.4]`,
    /// each key optional (the grade's default where left out).
    pub grade_policy: Option<std::collections::BTreeMap<String, GradePolicyFile>>,
}

/// One grade's release policy in the TOML file: what is given replaces the grade's default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradePolicyFile {
    /// Smallest k of an aggregate reading the grade (at least 2).
    pub min_k: Option<u64>,
    /// Whether every aggregate needs epsilon.
    pub dp_required: Option<bool>,
    /// Whether every aggregate with measures needs epsilon (true when `dp_required` is).
    pub dp_for_measures: Option<bool>,
    /// Largest epsilon one release may spend on a dataset of the grade (its aggregates
    /// together), within the platform's epsilon range.
    pub max_epsilon: Option<f64>,
}

/// Values given on the command line or through `DATAOP_*` variables; they override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config` / `DATAOP_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// `--data-dir` / `DATAOP_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url` / `DATAOP_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--bind` / `DATAOP_BIND`.
    pub bind: Option<String>,
    /// `DATAOP_SECRET_KEY`.
    pub secret_key: Option<String>,
    /// `DATAOP_SECURE_COOKIES`.
    pub secure_cookies: Option<bool>,
    /// `DATAOP_UPLOAD_LIMIT_BYTES`.
    pub upload_limit_bytes: Option<u64>,
    /// `DATAOP_SMTP_URL`.
    pub smtp_url: Option<String>,
    /// `DATAOP_MAIL_FROM`.
    pub mail_from: Option<String>,
}

/// The effective configuration of one process.
#[derive(Clone)]
pub struct Config {
    /// Address to listen on.
    pub bind: String,
    /// Data directory (created if missing).
    pub data_dir: PathBuf,
    /// Database URL; defaults to `sqlite://<data_dir>/dataop.db`.
    pub database_url: String,
    /// Session-signing secret when given explicitly (never logged).
    pub secret_key: Option<String>,
    /// Whether cookies carry the `Secure` attribute.
    pub secure_cookies: bool,
    /// Browser session lifetime in hours.
    pub session_hours: i64,
    /// API token lifetime in days.
    pub token_days: i64,
    /// Largest accepted upload in bytes (default 2 GiB).
    pub upload_limit_bytes: u64,
    /// Failed logins allowed per account within the window.
    pub login_max_failures_account: u32,
    /// Failed logins allowed per source address within the window.
    pub login_max_failures_address: u32,
    /// Throttle window in seconds.
    pub login_window_secs: u64,
    /// How often the scheduler runs timed work, in seconds (default 60).
    pub scheduler_interval_secs: u64,
    /// Outgoing mail server URL (may hold a password: never logged); `None` writes `.eml`
    /// files under `<data_dir>/outbox/`.
    pub smtp_url: Option<String>,
    /// The `From` address of outgoing mail.
    pub mail_from: String,
    /// Working days to review a submitted application (default 20).
    pub review_days: u32,
    /// Working days for an expert's opinion (default 10).
    pub expert_days: u32,
    /// Working days of the public notice (default 5).
    pub notice_days: u32,
    /// Working days to decide an objection (default 5, Jilin art. 12).
    pub objection_days: u32,
    /// Who reviews computations and outputs: `regulator` or `platform`.
    pub job_reviewer: String,
    /// In-process job workers of `dataop serve`.
    pub job_workers: usize,
    /// Lease of a running job, in seconds (renewed while it runs).
    pub job_lease_secs: u64,
    /// How long an idle worker waits before it looks at the queue again, in milliseconds.
    pub job_poll_ms: u64,
    /// The time zone times are shown in, and deadline dates are counted in.
    pub time_zone: chrono_tz::Tz,
    /// The release policy of dataset grades 1 to 4 (ABI v2, guarantee 5).
    pub grade_policy: [ReleasePolicy; 4],
    /// The dominance share (ABI v2, guarantee 6).
    pub dominance_share: f64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("secure_cookies", &self.secure_cookies)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field("time_zone", &self.time_zone)
            .field("grade_policy", &self.grade_policy)
            .field("dominance_share", &self.dominance_share)
            .finish_non_exhaustive()
    }
}

/// Replaces the password of a database or mail server URL by `***` so the URL can be logged.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.rsplit_once('@')
    {
        let user = userinfo.split(':').next().unwrap_or("");
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

/// The time zone when none is configured: Beijing time.
pub const DEFAULT_TIME_ZONE: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

/// The `From` address when none is configured.
pub const DEFAULT_MAIL_FROM: &str = "dataop <noreply@localhost>";

impl Config {
    /// Builds the configuration from overrides, the optional TOML file and defaults.
    pub fn load(o: Overrides) -> anyhow::Result<Self> {
        let file = match &o.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let database_url = o
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("dataop.db").display()));
        let smtp_url = o
            .smtp_url
            .or(file.smtp_url)
            .filter(|u| !u.trim().is_empty());
        if let Some(url) = &smtp_url
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            anyhow::bail!(
                "smtp_url must start with smtp:// or smtps:// (got {})",
                redact_url(url)
            );
        }
        Ok(Self {
            bind: o
                .bind
                .or(file.bind)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir,
            database_url,
            secret_key: o.secret_key.or(file.secret_key),
            secure_cookies: o.secure_cookies.or(file.secure_cookies).unwrap_or(false),
            session_hours: file.session_hours.unwrap_or(8).clamp(1, 24 * 30),
            token_days: file.token_days.unwrap_or(30).clamp(1, 365),
            upload_limit_bytes: o
                .upload_limit_bytes
                .or(file.upload_limit_bytes)
                .unwrap_or(2 * 1024 * 1024 * 1024),
            login_max_failures_account: file.login_max_failures_account.unwrap_or(5).max(1),
            login_max_failures_address: file.login_max_failures_address.unwrap_or(20).max(1),
            login_window_secs: file.login_window_secs.unwrap_or(900).max(1),
            scheduler_interval_secs: file.scheduler_interval_secs.unwrap_or(60).clamp(1, 3600),
            smtp_url,
            mail_from: o
                .mail_from
                .or(file.mail_from)
                .unwrap_or_else(|| DEFAULT_MAIL_FROM.to_owned()),
            review_days: file.review_days.unwrap_or(20).clamp(1, 250),
            expert_days: file.expert_days.unwrap_or(10).clamp(1, 250),
            notice_days: file.notice_days.unwrap_or(5).clamp(1, 250),
            objection_days: file.objection_days.unwrap_or(5).clamp(1, 250),
            job_reviewer: match file.job_reviewer.as_deref() {
                None | Some("regulator") => "regulator".into(),
                Some("platform") => "platform".into(),
                Some(other) => {
                    anyhow::bail!("job_reviewer must be `regulator` or `platform`, not `{other}`")
                }
            },
            job_workers: file.job_workers.unwrap_or(2).min(64),
            job_lease_secs: file.job_lease_secs.unwrap_or(30).clamp(5, 3600),
            job_poll_ms: file.job_poll_ms.unwrap_or(300).clamp(10, 60_000),
            grade_policy: grade_policy(file.grade_policy.unwrap_or_default())?,
            dominance_share: match file.dominance_share {
                None => Limits::default().dominance_share,
                Some(s) if s > 0.0 && s <= 1.0 => s,
                Some(s) => anyhow::bail!("dominance_share must lie in (0, 1], not {s}"),
            },
            time_zone: match file.time_zone.as_deref() {
                None => DEFAULT_TIME_ZONE,
                Some(name) => name.trim().parse().map_err(|_| {
                    anyhow::anyhow!(
                        "time_zone must be an IANA time zone name such as `Asia/Shanghai`, not `{name}`"
                    )
                })?,
            },
        })
    }

    /// A configuration for tests and tools: defaults with the given data dir and database URL.
    pub fn for_data_dir(data_dir: &Path, database_url: Option<String>) -> anyhow::Result<Self> {
        Self::load(Overrides {
            data_dir: Some(data_dir.to_path_buf()),
            database_url,
            ..Overrides::default()
        })
    }
}

/// The release policy of each grade: the defaults of [`Limits`], with what the file gives;
/// refuses a grade other than 1 to 4, k below 2, epsilon caps outside the platform's epsilon
/// range, and a grade that requires differential privacy but not for measures.
fn grade_policy(
    file: std::collections::BTreeMap<String, GradePolicyFile>,
) -> anyhow::Result<[ReleasePolicy; 4]> {
    let defaults = Limits::default();
    let mut grades = defaults.grades;
    for (key, given) in file {
        let grade = match key.parse::<usize>() {
            Ok(g @ 1..=4) => g,
            _ => anyhow::bail!("grade_policy.{key}: grades are 1 to 4"),
        };
        let p = &mut grades[grade - 1];
        p.min_k = given.min_k.unwrap_or(p.min_k);
        p.dp_required = given.dp_required.unwrap_or(p.dp_required);
        p.dp_for_measures = given.dp_for_measures.unwrap_or(p.dp_for_measures);
        p.max_epsilon = given.max_epsilon.unwrap_or(p.max_epsilon);
    }
    let (lo, hi) = defaults.epsilon_range;
    for (i, p) in grades.iter().enumerate() {
        let g = i + 1;
        if p.min_k < 2 {
            anyhow::bail!("grade_policy.{g}.min_k must be at least 2, not {}", p.min_k);
        }
        if !(lo..=hi).contains(&p.max_epsilon) {
            anyhow::bail!(
                "grade_policy.{g}.max_epsilon must lie in the platform's epsilon range [{lo}, {hi}], not {}",
                p.max_epsilon
            );
        }
        if p.dp_required && !p.dp_for_measures {
            anyhow::bail!(
                "grade_policy.{g}: dp_required = true requires dp_for_measures = true (measures are part of every aggregate's release)"
            );
        }
    }
    Ok(grades)
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn toml_file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dataop.toml");
        std::fs::write(
            &path,
            "bind = \"0.0.0.0:9000\"\ndata_dir = \"/srv/d\"\nsecure_cookies = true\nsession_hours = 2\n\
             smtp_url = \"smtp://mail.local:25\"\nmail_from = \"平台 <noreply@example.org>\"\n",
        )
        .unwrap();
        let c = Config::load(Overrides {
            config_file: Some(path.clone()),
            bind: Some("127.0.0.1:1".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.bind, "127.0.0.1:1", "a flag beats the file");
        assert_eq!(c.data_dir, PathBuf::from("/srv/d"));
        assert_eq!(c.database_url, "sqlite:///srv/d/dataop.db");
        assert!(c.secure_cookies);
        assert_eq!(c.session_hours, 2);
        assert_eq!(c.smtp_url.as_deref(), Some("smtp://mail.local:25"));
        assert_eq!(c.mail_from, "平台 <noreply@example.org>");
        assert_eq!(
            c.time_zone,
            chrono_tz::Asia::Shanghai,
            "Beijing time by default"
        );
        std::fs::write(&path, "time_zone = \"Europe/Paris\"\n").unwrap();
        let c = Config::load(Overrides {
            config_file: Some(path.clone()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.time_zone, chrono_tz::Europe::Paris);
        std::fs::write(&path, "time_zone = \"Mars/Olympus\"\n").unwrap();
        let e = Config::load(Overrides {
            config_file: Some(path.clone()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("Mars/Olympus"), "{e:#}");
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        assert!(
            Config::load(Overrides {
                config_file: Some(path),
                ..Overrides::default()
            })
            .is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn smtp_password_is_redacted_in_debug() {
        let mut c = Config::for_data_dir(Path::new("/tmp/x"), None).unwrap();
        assert_eq!(c.smtp_url, None, "no SMTP by default: the file outbox");
        c.smtp_url = Some("smtps://mailer:hunter2@mail.example.org:465".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("smtps://mailer:***@mail.example.org:465"),
            "{shown}"
        );
    }

    #[test]
    fn release_policy_defaults_overrides_and_refusals() {
        let c = Config::for_data_dir(Path::new("/tmp/x"), None).unwrap();
        let by_grade: Vec<_> = c
            .grade_policy
            .iter()
            .map(|p| (p.min_k, p.dp_required, p.dp_for_measures, p.max_epsilon))
            .collect();
        assert_eq!(
            by_grade,
            [
                (10, false, false, 10.0),
                (10, false, false, 10.0),
                (10, true, true, 2.0),
                (20, true, true, 0.5),
            ],
            "grades 1–2 k ≥ 10, grade 3 DP, grade 4 DP with a smaller cap"
        );
        assert_eq!(c.dominance_share, 0.5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dataop.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(Overrides {
                config_file: Some(path.clone()),
                ..Overrides::default()
            })
        };
        let c = load(
            "dominance_share = 0.8\n[grade_policy.2]\ndp_for_measures = true\n\
             [grade_policy.4]\nmin_k = 30\nmax_epsilon = 0.25\n",
        )
        .unwrap();
        assert_eq!(c.dominance_share, 0.8);
        assert!(c.grade_policy[1].dp_for_measures && !c.grade_policy[1].dp_required);
        assert_eq!(
            (c.grade_policy[3].min_k, c.grade_policy[3].max_epsilon),
            (30, 0.25)
        );
        assert!(
            c.grade_policy[3].dp_required,
            "what is left out keeps its default"
        );
        for (text, needle) in [
            ("dominance_share = 0.0\n", "dominance_share"),
            ("dominance_share = 1.5\n", "dominance_share"),
            ("[grade_policy.5]\nmin_k = 10\n", "grade_policy.5"),
            ("[grade_policy.1]\nmin_k = 1\n", "grade_policy.1.min_k"),
            (
                "[grade_policy.3]\nmax_epsilon = 20.0\n",
                "grade_policy.3.max_epsilon",
            ),
            (
                "[grade_policy.4]\nmax_epsilon = 0.001\n",
                "grade_policy.4.max_epsilon",
            ),
            (
                "[grade_policy.3]\ndp_for_measures = false\n",
                "grade_policy.3",
            ),
            ("[grade_policy.1]\nmin_kk = 10\n", "min_kk"),
        ] {
            let e = format!("{:#}", load(text).unwrap_err());
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn default_database_is_sqlite_in_data_dir() {
        let c = Config::for_data_dir(Path::new("/tmp/x"), None).unwrap();
        assert_eq!(c.database_url, "sqlite:///tmp/x/dataop.db");
        assert_eq!(c.upload_limit_bytes, 2 * 1024 * 1024 * 1024);
    }
}
