//! The `dataop` command line: serve, migrate, user create, audit verify.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use dataop::config::{Config, Overrides};

/// Platform for the authorized operation of public data.
#[derive(Debug, Parser)]
#[command(name = "dataop", version, about)]
struct Cli {
    /// Optional TOML configuration file.
    #[arg(long, global = true, env = "DATAOP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives; taken by every subcommand that touches it.
#[derive(Debug, Clone, Args)]
struct DataArgs {
    /// Data directory (database, secrets, dataset versions). Default `./data`.
    #[arg(long, env = "DATAOP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: `sqlite://path` or `postgres://user:pass@host/db`.
    /// Default `sqlite://<data-dir>/dataop.db`.
    #[arg(long, env = "DATAOP_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web server.
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Address to listen on. Default `127.0.0.1:8080`.
        #[arg(long, env = "DATAOP_BIND")]
        bind: Option<String>,
        /// Seed the demo world (once; existing data is kept) and print the demo accounts.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Inspect the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Measure performance (prints figures; run the release build).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Submit and follow computation jobs through the API.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Run job workers against the database (more workers, other processes or machines).
    Worker {
        #[command(flatten)]
        data: DataArgs,
        /// Worker threads in this process.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Try a WebAssembly job before submitting it (see sandbox/ABI.md).
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SandboxCommand {
    /// Validate a module and its manifest; list imports, exports and declared outputs.
    Check {
        /// The module (.wasm, or .wat text).
        module: PathBuf,
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Run a job on trial data and print the released output and the run report.
    Run {
        /// The module (.wasm, or .wat text).
        module: PathBuf,
        /// The manifest (TOML).
        manifest: PathBuf,
        /// `[NAME=]PATH` of a CSV file (demo outpatient columns) or a columnar version
        /// directory; repeat for several datasets (in manifest order when NAME is left out).
        #[arg(long, required = true)]
        data: Vec<String>,
    },
}

/// Where the server is and who asks.
#[derive(Debug, Clone, Args)]
struct ApiArgs {
    /// The platform's address, e.g. `http://127.0.0.1:8080`.
    #[arg(long, env = "DATAOP_SERVER")]
    server: String,
    /// An API token (My account → API tokens, or `POST /api/v1/tokens`).
    #[arg(long, env = "DATAOP_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Submit a module and its manifest; prints the job (JSON).
    Submit {
        #[command(flatten)]
        api: ApiArgs,
        /// The module (.wasm, or .wat text).
        module: PathBuf,
        /// The manifest (TOML).
        manifest: PathBuf,
        /// The purpose of the run.
        #[arg(long, default_value = "")]
        purpose: String,
        /// `NAME=DATASET_ID`: binds a manifest dataset to a catalog dataset (repeatable).
        #[arg(long)]
        dataset: Vec<String>,
        /// The submission's `Idempotency-Key` (default: a random one). Running the command
        /// again with the same key within 24 hours answers the run it recorded.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Print a job's state, progress and report (JSON).
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// The job id.
        id: i64,
    },
    /// Wait until a job ends; exit status 0 when its output was released.
    Wait {
        #[command(flatten)]
        api: ApiArgs,
        /// The job id.
        id: i64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Download a released output, checking its hash and the platform's signature.
    Output {
        #[command(flatten)]
        api: ApiArgs,
        /// The job id.
        id: i64,
        /// `csv` or `json`.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Example job (a) end to end: submission of an approved module to downloadable output
    /// (p50 of 50), and jobs/s of two workers over 500 queued runs; last line is JSON.
    Jobs {
        /// Rows of the demo dataset.
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        /// Also on PostgreSQL: URL of a database of a role with CREATEDB (a fresh database
        /// is created and dropped).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// CSV ingest of generated outpatient visits (parse, validate, pseudonymize, write
    /// columnar) against a baseline that only reads and splits the same file.
    Ingest {
        /// Number of generated rows.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Directory for the generated file and the version (removed afterwards).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        tmp_dir: PathBuf,
    },
    /// Example job (a) in the sandbox against a native loop and SQLite, start latency and the
    /// parallel run; last line is JSON.
    Sandbox {
        /// Number of generated rows (default 10,000,000).
        #[arg(long)]
        rows: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a platform administrator (bootstrap). The password is read from
    /// `DATAOP_USER_PASSWORD` or, if unset, from the first line of standard input.
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// Login name.
        #[arg(long)]
        username: String,
        /// Name shown on pages (default: the login name).
        #[arg(long)]
        display_name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain; exits non-zero naming the first broken entry.
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
}

fn config_for(
    cli_config: &Option<PathBuf>,
    data: DataArgs,
    bind: Option<String>,
) -> anyhow::Result<Config> {
    Config::load(Overrides {
        config_file: cli_config.clone(),
        data_dir: data.data_dir,
        database_url: data.database_url,
        bind,
        secret_key: std::env::var("DATAOP_SECRET_KEY").ok(),
        secure_cookies: std::env::var("DATAOP_SECURE_COOKIES")
            .ok()
            .map(|v| matches!(v.as_str(), "1" | "true" | "yes")),
        upload_limit_bytes: std::env::var("DATAOP_UPLOAD_LIMIT_BYTES")
            .ok()
            .map(|v| {
                v.parse()
                    .context("DATAOP_UPLOAD_LIMIT_BYTES must be a number of bytes")
            })
            .transpose()?,
        smtp_url: std::env::var("DATAOP_SMTP_URL").ok(),
        mail_from: std::env::var("DATAOP_MAIL_FROM").ok(),
    })
}

fn main() -> ExitCode {
    // Fail points (`fail::fail_point!`) act only when the FAILPOINTS environment variable names
    // them: the process tests use it to kill the server at chosen moments.
    let _failpoints = fail::FailScenario::setup();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DATAOP_LOG")
                .unwrap_or_else(|_| "info,actix_server=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { data, bind, demo } => {
            let config = config_for(&cli.config, data, bind)?;
            serve(config, demo)?;
        }
        Command::Migrate { data } => {
            let config = config_for(&cli.config, data, None)?;
            std::fs::create_dir_all(&config.data_dir)?;
            dataop::db::connect(&config.database_url)?;
            println!("database is up to date");
        }
        Command::User {
            command:
                UserCommand::Create {
                    data,
                    username,
                    display_name,
                },
        } => {
            let config = config_for(&cli.config, data, None)?;
            let password = match std::env::var("DATAOP_USER_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let state = dataop::AppState::open(config)?;
            let mut conn = state.pool.get()?;
            let id = dataop::accounts::create_admin(
                &mut conn,
                &username,
                display_name.as_deref().unwrap_or(&username),
                &password,
                dataop::db::to_micros(state.clock.now()),
            )?;
            println!("created platform administrator {username} (id {id})");
        }
        Command::Audit {
            command: AuditCommand::Verify { data },
        } => {
            let config = config_for(&cli.config, data, None)?;
            let mut conn = dataop::db::Manager::new(&config.database_url)
                .open()
                .context("connecting to the database")?;
            match dataop::supervision::audit::verify(&mut conn)? {
                Ok(n) => println!("audit log verified: {n} entries, chain intact"),
                Err(broken) => {
                    println!(
                        "audit log BROKEN at entry {} ({})",
                        broken.id,
                        match broken.reason {
                            "hash" => "its content does not match its hash",
                            _ => "it does not link to the entry before it",
                        }
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Job { command } => return job_command(command),
        Command::Worker { data, threads } => {
            let config = config_for(&cli.config, data, None)?;
            let state = actix_web::web::Data::new(dataop::AppState::open(config)?);
            println!("dataop worker: {threads} thread(s) running queued jobs");
            for h in dataop::jobs::worker::spawn_pool(state, threads.max(1), "worker") {
                let _ = h.join();
            }
        }
        Command::Bench {
            command: BenchCommand::Jobs { rows, postgres },
        } => {
            dataop::jobs::bench::run(rows, postgres.as_deref(), &mut std::io::stdout())?;
        }
        Command::Bench {
            command: BenchCommand::Ingest { rows, tmp_dir },
        } => {
            println!("{}", dataop::bench::ingest(rows, &tmp_dir)?);
        }
        Command::Bench {
            command: BenchCommand::Sandbox { rows },
        } => {
            let code = dataop_sandbox::cli::bench_command(rows, &mut std::io::stdout())?;
            return Ok(ExitCode::from(code as u8));
        }
        Command::Sandbox {
            command: SandboxCommand::Check { module, manifest },
        } => {
            let code =
                dataop_sandbox::cli::check_command(&module, &manifest, &mut std::io::stdout())?;
            return Ok(ExitCode::from(code as u8));
        }
        Command::Sandbox {
            command:
                SandboxCommand::Run {
                    module,
                    manifest,
                    data,
                },
        } => {
            let code = dataop_sandbox::cli::run_command(
                &module,
                &manifest,
                &data,
                &mut std::io::stdout(),
            )?;
            return Ok(ExitCode::from(code as u8));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn job_command(command: JobCommand) -> anyhow::Result<ExitCode> {
    use dataop::jobs::cli;
    let mut out = std::io::stdout();
    match command {
        JobCommand::Submit {
            api,
            module,
            manifest,
            purpose,
            dataset,
            idempotency_key,
        } => {
            cli::submit(
                &api.server,
                &api.token,
                &module,
                &manifest,
                &purpose,
                &dataset,
                idempotency_key.as_deref(),
                &mut out,
            )?;
        }
        JobCommand::Status { api, id } => {
            println!("{}", cli::status(&api.server, &api.token, id)?);
        }
        JobCommand::Wait { api, id, timeout } => {
            let released = cli::wait(
                &api.server,
                &api.token,
                id,
                std::time::Duration::from_secs(timeout),
                &mut out,
            )?;
            if !released {
                return Ok(ExitCode::FAILURE);
            }
        }
        JobCommand::Output {
            api,
            id,
            format,
            output,
        } => cli::output(
            &api.server,
            &api.token,
            id,
            &format,
            output.as_deref(),
            &mut out,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    tracing::info!(?config, "starting");
    let state = actix_web::web::Data::new(dataop::AppState::open(config)?);
    dataop::catalog::ops::reconcile(&state.pool, &state.config.data_dir, &state.clock)
        .map_err(|e| anyhow::anyhow!("reconciling dataset versions: {e}"))?;
    if demo {
        dataop::demo::seed(&state)?;
    }
    dataop::scheduler::spawn(
        state.clone(),
        std::time::Duration::from_secs(state.config.scheduler_interval_secs),
    );
    dataop::jobs::worker::spawn_pool(state.clone(), state.config.job_workers, "serve");
    actix_web::rt::System::new().block_on(async move {
        let (server, addr) = dataop::start(state.clone(), 0)?;
        println!("dataop is listening on http://{addr}/");
        if demo {
            dataop::demo::print_accounts();
        }
        server.await?;
        Ok(())
    })
}
