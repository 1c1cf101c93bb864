//! dataop: a platform for the authorized operation of public data (公共数据授权运营).
//!
//! The server is a library so the integration tests start the real thing in-process; the
//! `dataop` binary (`src/main.rs`) is only the command line.

pub mod accounts;
pub mod admission;
pub mod agreements;
pub mod assets;
pub mod auth;
pub mod bench;
pub mod calendar;
pub mod catalog;
pub mod config;
pub mod db;
pub mod demo;
pub mod detail;
pub mod errors;
pub mod i18n;
pub mod idempotency;
pub mod input;
pub mod jobs;
pub mod listener;
pub mod mail;
pub mod reactions;
pub mod routes;
pub mod scheduler;
pub mod schema;
pub mod scratch;
pub mod secrets;
pub mod supervision;
pub mod web;
pub mod workflow;

use std::time::Duration;

use actix_web::{App, middleware};

pub use config::Config;
pub use secrets::Secrets;

/// Everything a request handler may need; shared as `web::Data<AppState>`.
pub struct AppState {
    /// The effective configuration.
    pub config: Config,
    /// The database pool.
    pub pool: db::DbPool,
    /// Keys kept in the data dir (never logged).
    pub secrets: Secrets,
    /// Failed-login throttle.
    pub throttle: auth::throttle::Throttle,
    /// The one source of "now" for deadlines and the scheduler.
    pub clock: calendar::Clock,
    /// The regulator's authorization seal (Ed25519; `seal.key` in the data dir, never logged).
    pub seal: agreements::seal::SealKey,
    /// The sandbox runtime of the job workers (created on first use).
    pub sandbox: jobs::Sandbox,
    /// Wakes this process's idle job workers when a run is queued.
    pub queue_bell: jobs::QueueBell,
    /// This process's scratch directory under `<data_dir>/tmp/`.
    pub scratch: scratch::Scratch,
}

impl AppState {
    /// Creates the data dir, removes the scratch files of stopped processes, loads or creates
    /// the secrets, opens and migrates the database.
    pub fn open(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let scratch = scratch::Scratch::open(&config.data_dir)?;
        let secrets = Secrets::load_or_create(&config)?;
        let seal = agreements::seal::SealKey::load_or_create(&config.data_dir)?;
        let pool = db::connect(&config.database_url)?;
        let throttle = auth::throttle::Throttle::new(
            Duration::from_secs(config.login_window_secs),
            config.login_max_failures_account,
            config.login_max_failures_address,
        );
        let clock = calendar::Clock::new(config.time_zone);
        let sandbox = jobs::Sandbox::new(jobs::policy::limits(&config));
        Ok(Self {
            config,
            pool,
            secrets,
            throttle,
            clock,
            seal,
            sandbox,
            queue_bell: jobs::QueueBell::default(),
            scratch,
        })
    }
}

/// Configures the application: state, limits, middleware-independent routes.
pub fn app_config(
    state: actix_web::web::Data<AppState>,
) -> impl FnOnce(&mut actix_web::web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state)
            .app_data(actix_web::web::JsonConfig::default().limit(256 * 1024));
        routes::configure(cfg);
    }
}

/// Binds `state.config.bind` and returns the running server and the bound address
/// (`workers` 0: one per core). Connections go through [`listener::accept`] (an over-long
/// request line is answered 414 there) to actix's HTTP/1 service. Also starts the mail worker,
/// which delivers queued messages within about a second and stops when the state is dropped.
pub fn start(
    state: actix_web::web::Data<AppState>,
    workers: usize,
) -> anyhow::Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    use actix_service::{ServiceFactoryExt as _, fn_service, map_config};
    mail::delivery::spawn_worker(std::sync::Arc::downgrade(&state.clone().into_inner()))?;
    let listener = std::net::TcpListener::bind(&state.config.bind)?;
    let addr = listener.local_addr()?;
    let mut server = actix_server::Server::build();
    if workers > 0 {
        server = server.workers(workers);
    }
    let server = server.listen("dataop", listener, move || {
        let app = App::new()
            .wrap(middleware::from_fn(web::page_middleware))
            .wrap(middleware::DefaultHeaders::new()
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Referrer-Policy", "same-origin"))
                .add(("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")))
            .configure(app_config(state.clone()));
        fn_service(listener::accept).and_then(
            actix_http::HttpService::build()
                .local_addr(addr)
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1(map_config(app, |_| actix_web::dev::AppConfig::default()))
                .map_err(|_| ()),
        )
    })?;
    Ok((server.run(), addr))
}
