//! The `unigate` binary: `serve --config FILE`, `serve --sandbox`, `check DIR`.

use std::num::NonZeroUsize;
use std::path::PathBuf;

/// Provider pages are parsed, mapped and freed in large blocks on every request; glibc's malloc
/// spent about 30% of a request's CPU consolidating them (bench/gateway-load.sh, perf). mimalloc
/// 2.x (the crate's `v2`), not 3.x: 3.x keeps freed memory for a second before returning it,
/// which took a 100,000-user stream from 32 to 62 MiB peak (bench/stream-memory.sh), at the same
/// speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use unigate_gateway::config::Config;
use unigate_gateway::{Gateway, check, parse_listen, sandbox, telemetry};
use unigate_mapping::coverage::{ProviderList, integrations_table};

#[derive(Debug, Parser)]
#[command(
    name = "unigate",
    version,
    about = "A self-hosted, Truto-compatible unified-API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the unified API.
    Serve {
        /// The gateway config file (see config.example.yaml).
        #[arg(long, conflicts_with = "sandbox", required_unless_present = "sandbox")]
        config: Option<PathBuf>,
        /// Serve the built-in sandbox: token `sandbox`, account `sandbox`; no config needed.
        #[arg(long)]
        sandbox: bool,
        /// How many users the sandbox provider holds.
        #[arg(long, default_value_t = sandbox::DEFAULT_USERS, requires = "sandbox")]
        sandbox_users: usize,
        /// Address to listen on (overrides the config's `listen`; default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Log lines as text (default) or as JSON objects, one per line, for log shippers.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Run one unified call against a real account and show every step: the provider calls
    /// (credentials redacted), their answers, the unified answer, and which path mapped it.
    Try {
        /// The gateway config file (its store holds the account).
        #[arg(long, conflicts_with = "sandbox", required_unless_present = "sandbox")]
        config: Option<PathBuf>,
        /// Try against the built-in sandbox instead (accounts `sandbox`, `sandbox-cursor`, `sandbox-groups`).
        #[arg(long)]
        sandbox: bool,
        /// The integrated account to call.
        #[arg(long)]
        account: String,
        /// An edited mapping file to try in place of the loaded one of the same name.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// The unified resource.
        #[arg(long, default_value = "user-directory/users")]
        resource: String,
        /// Query parameters, `name=value` (qs syntax: `updated_at[gt]=2024-01-01`).
        query: Vec<String>,
    },
    /// Apply the store's pending migrations and exit (for deploy pipelines); replicas that
    /// start later find nothing to do.
    Migrate {
        /// The gateway config file; its `store` is migrated.
        #[arg(long)]
        config: PathBuf,
    },
    /// Load and validate every mapping file of a directory; list every error.
    Check {
        /// The mappings directory.
        dir: PathBuf,
    },
    /// Print the integrations coverage table (docs/integrations.md) generated from a mappings
    /// directory, its provider list (`integrations.tsv`) and its `unmapped/` records.
    Docs {
        /// The mappings directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { dir } => match check(&dir) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Docs { dir } => {
            match unigate_mapping::Catalog::load_dir(&dir).and_then(|catalog| {
                let list = ProviderList::load_dir(&dir)?;
                list.check(&catalog, &dir)?;
                Ok(integrations_table(&catalog, &list))
            }) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Try {
            config,
            sandbox,
            account,
            mapping,
            resource,
            query,
        } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("unigate: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let tried = runtime.block_on(try_call(
                config.as_deref(),
                sandbox,
                &account,
                mapping.as_deref(),
                &resource,
                &query,
            ));
            match tried {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(report) => {
                    print!("{report}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate { config } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("unigate: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(migrate(&config)) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("unigate: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            sandbox,
            sandbox_users,
            listen,
            log_format,
        } => {
            let loaded = match config.as_deref() {
                Some(path) if !sandbox => {
                    match Config::load(path, &|name| std::env::var(name).ok()) {
                        Ok(loaded) => Some((loaded, path.to_owned())),
                        Err(error) => {
                            eprintln!("unigate: {error}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                _ => None,
            };
            let workers = loaded
                .as_ref()
                .and_then(|(config, _)| config.server.workers);
            let runtime = match serving_runtime(workers) {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("unigate: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let format = match log_format {
                LogFormat::Text => telemetry::LogFormat::Text,
                LogFormat::Json => telemetry::LogFormat::Json,
            };
            let settings = loaded
                .as_ref()
                .and_then(|(config, _)| config.opentelemetry.as_ref());
            let spans = match telemetry::install(format, settings, runtime.handle().clone()) {
                Ok(spans) => spans,
                Err(error) => {
                    eprintln!("unigate: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let served = runtime.block_on(serve(loaded, sandbox, sandbox_users, listen));
            if let Some(spans) = spans {
                telemetry::shutdown(spans);
            }
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("unigate: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The runtime requests run on: `server.workers` threads, else `TOKIO_WORKER_THREADS`, else
/// tokio's default (one per CPU the process may use).
fn serving_runtime(workers: Option<NonZeroUsize>) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // Read here rather than by tokio, which panics on a value it cannot use.
    if let Some(workers) = workers.map_or_else(workers_from_env, |workers| Ok(Some(workers)))? {
        builder.worker_threads(workers.get());
    }
    builder.build().map_err(|error| error.to_string())
}

/// `TOKIO_WORKER_THREADS`, tokio's own variable for its worker count, when it is set.
fn workers_from_env() -> Result<Option<NonZeroUsize>, String> {
    const VARIABLE: &str = "TOKIO_WORKER_THREADS";
    let Some(value) = std::env::var_os(VARIABLE) else {
        return Ok(None);
    };
    value
        .to_str()
        .and_then(|text| text.parse::<NonZeroUsize>().ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "{VARIABLE}: give a number of threads from 1 (or set server.workers), not {value:?}"
            )
        })
}

async fn serve(
    config: Option<(Config, PathBuf)>,
    sandbox: bool,
    sandbox_users: usize,
    listen: Option<String>,
) -> Result<(), String> {
    let (gateway, configured_listen, metrics_listen) = if sandbox {
        (
            Gateway::sandbox(sandbox_users).await?,
            "127.0.0.1:8080".to_owned(),
            None,
        )
    } else {
        let (config, path) = config.ok_or("give --config FILE or --sandbox")?;
        let gateway = Gateway::from_config(&config).await?;
        reload_on_sighup(gateway.state.clone(), path);
        (
            gateway,
            config.listen.clone(),
            config.server.metrics_listen.clone(),
        )
    };
    if let Some(metrics_listen) = metrics_listen {
        let address = parse_listen(&metrics_listen)?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| {
                format!("cannot listen on {address} (server.metrics_listen): {error}")
            })?;
        tracing::info!(%address, "metrics on their own address");
        let router = unigate_gateway::metrics_router(gateway.state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
    }
    let address = parse_listen(listen.as_deref().unwrap_or(&configured_listen))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    let bound = listener.local_addr().map_err(|error| error.to_string())?;
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(%bound, sandbox, workers, "unigate listening");
    let shutdown = shutdown_signal();
    // Printed on stdout so scripts can read the port when `--listen 127.0.0.1:0` is used.
    println!("unigate listening on http://{bound}");
    gateway
        .serve(listener, shutdown)
        .await
        .map_err(|error| error.to_string())?;
    // Every store write is committed when it returns: nothing is left to flush.
    tracing::info!("unigate stopped");
    Ok(())
}

/// `unigate try`: the report on stdout; `Err` when the call failed (the report says how).
async fn try_call(
    config_path: Option<&std::path::Path>,
    sandbox: bool,
    account: &str,
    mapping: Option<&std::path::Path>,
    resource: &str,
    query: &[String],
) -> Result<String, String> {
    use std::fmt::Write as _;
    let (gateway, mappings_dir) = match config_path {
        Some(path) if !sandbox => {
            let config = Config::load(path, &|name| std::env::var(name).ok())?;
            (
                Gateway::from_config(&config).await?,
                Some(config.mappings_dir.clone()),
            )
        }
        _ => (Gateway::sandbox(sandbox::DEFAULT_USERS).await?, None),
    };
    let mut engine = gateway.state.engine();
    if let Some(file) = mapping {
        let dir = mappings_dir.ok_or("--mapping needs --config (its mappings_dir)")?;
        let catalog = unigate_mapping::Catalog::load_dir_with(&dir, Some(file))
            .map_err(|errors| errors.to_string())?;
        engine = engine.with_catalog(std::sync::Arc::new(catalog));
    }
    let (model, resource) = resource
        .split_once('/')
        .ok_or_else(|| format!("--resource `{resource}`: give it as model/resource"))?;
    let mut text = format!("integrated_account_id={account}");
    for pair in query {
        text.push('&');
        text.push_str(pair);
    }
    let params = unigate_unified::qs::parse(&text)?;
    let trace = unigate_engine::trace::Trace::default();
    let (fast_before, engine_before) = unigate_mapping::expression::evaluations_by_path();
    let answer = unigate_engine::trace::TRACE
        .scope(trace.clone(), engine.list(model, resource, params))
        .await;
    let (fast_after, engine_after) = unigate_mapping::expression::evaluations_by_path();
    let mut report = String::new();
    let calls = trace.lock().map(|calls| calls.clone()).unwrap_or_default();
    // The loaded file's integration and list method (an account override may differ).
    let integration = engine.accounts().get(account).and_then(|found| {
        engine
            .catalog()
            .integrations
            .get(&found.integration)
            .cloned()
    });
    let method = integration.as_ref().and_then(|integration| {
        integration.unified_method(model, resource, unigate_mapping::Method::List)
    });
    // Fields the list resource omits (other users' API keys) are not shown in its raw pages
    // either.
    let listed = integration
        .as_ref()
        .zip(method)
        .and_then(|(integration, method)| integration.resources.get(&method.resource));
    for (index, call) in calls.iter().enumerate() {
        let _ = writeln!(
            report,
            "== provider call {}\n{} {}",
            index + 1,
            call.method,
            call.url
        );
        for (name, value) in &call.headers {
            let _ = writeln!(report, "  {name}: {value}");
        }
        if let Some(body) = &call.body {
            let _ = writeln!(report, "  body: {body}");
        }
        match &call.answer {
            Ok(status) => {
                let _ = writeln!(report, "-> {status}");
            }
            Err(error) => {
                let _ = writeln!(report, "-> no answer: {error}");
            }
        }
        let body = serde_json::from_str::<serde_json::Value>(&call.response_body)
            .ok()
            .map(|mut value| {
                if let Some(listed) = listed {
                    unigate_mapping::mark_omitted(listed, &mut value);
                }
                value
            })
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or_else(|| call.response_body.clone());
        const SHOWN: usize = 20_000;
        match body.char_indices().nth(SHOWN) {
            Some((cut, _)) => {
                let _ = writeln!(
                    report,
                    "{}\n… ({} more bytes)",
                    &body[..cut],
                    body.len() - cut
                );
            }
            None => {
                let _ = writeln!(report, "{body}");
            }
        }
    }
    let (fast, jsonata) = (fast_after - fast_before, engine_after - engine_before);
    // Which path the records' mapping takes.
    let records_path = integration
        .as_ref()
        .zip(method)
        .map(
            |(integration, method)| match method.response_mapping.fast_path_gap() {
                None => format!(
                    "records: `{}` response_mapping runs on the fast path (a record it cannot take goes to the JSONata engine)\n",
                    integration.id
                ),
                Some(gap) => format!(
                    "records: `{}` response_mapping runs on the JSONata engine: it uses {gap}\n",
                    integration.id
                ),
            },
        )
        .unwrap_or_default();
    let context = engine
        .accounts()
        .get(account)
        .map(|found| found.context.clone())
        .unwrap_or_default();
    let mapped_by = format!(
        "== mapping\n{records_path}{fast} evaluation(s) on the fast path, {jsonata} on the JSONata engine (query, record and pagination expressions)\n"
    );
    match answer {
        Ok(output) => {
            let body: serde_json::Value =
                serde_json::from_slice(&output.to_json()).unwrap_or_default();
            let text = serde_json::to_string_pretty(&body).unwrap_or_default();
            let _ = writeln!(
                report,
                "== unified answer\n{}",
                unigate_engine::trace::redact_context_values(&text, &context)
            );
            report.push_str(&mapped_by);
            Ok(report)
        }
        Err(error) => {
            let text = serde_json::to_string_pretty(&error.to_envelope()).unwrap_or_default();
            let _ = writeln!(
                report,
                "== unified error\n{}",
                unigate_engine::trace::redact_context_values(&text, &context)
            );
            report.push_str(&mapped_by);
            Err(report)
        }
    }
}

async fn migrate(path: &std::path::Path) -> Result<String, String> {
    use unigate_gateway::config::StoreSettings;
    let config = Config::load(path, &|name| std::env::var(name).ok())?;
    match &config.store {
        StoreSettings::Memory => Ok("store: memory; nothing to migrate".to_owned()),
        StoreSettings::Sqlite { path, key } => {
            let key = unigate_store::sqlite::StoreKey::parse(key)
                .map_err(|error| format!("store.key: {error}"))?;
            let store = unigate_store::sqlite::SqliteStore::open(path, key)
                .map_err(|error| format!("{}: {error}", path.display()))?;
            let version = store.schema_version().map_err(|error| error.to_string())?;
            Ok(format!(
                "store: {} at schema version {version}",
                path.display()
            ))
        }
        StoreSettings::Postgres { url, tls, .. } => {
            let settings = unigate_store::postgres::PostgresSettings {
                url: url.clone(),
                pool_size: 1,
                token_leases: 1,
                token_lease_wait: unigate_store::postgres::TOKEN_LEASE_WAIT,
                reload_every: std::time::Duration::from_secs(30),
                tls: tls.as_ref().map(|tls| tls.to_store()),
            };
            let version = unigate_store::postgres::migrate(&settings)
                .await
                .map_err(|error| format!("store: {error}"))?;
            Ok(format!("store: postgres at schema version {version}"))
        }
    }
}

/// SIGHUP reloads the config file's mappings, tokens and new accounts; a file that does not
/// load leaves the current set serving, and every problem is logged with its file and line.
fn reload_on_sighup(state: unigate_gateway::AppState, path: PathBuf) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloading needs a restart");
            return;
        };
        while hangups.recv().await.is_some() {
            let reloaded = match Config::load(&path, &|name| std::env::var(name).ok()) {
                Ok(config) => state.reload(&config).await,
                Err(error) => Err(error),
            };
            match reloaded {
                Ok(summary) => tracing::info!("{summary}"),
                Err(problems) => {
                    for problem in problems.lines() {
                        tracing::error!(%problem, "reload refused; the current set keeps serving");
                    }
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (state, path);
}

/// Ctrl-C, or SIGTERM (how a container is stopped). The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM that arrives as soon as the gateway
/// says it is listening must stop it gracefully, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(terminate), Ok(interrupt)) => Some((terminate, interrupt)),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the gateway");
                None
            }
        }
    };
    async move {
        #[cfg(unix)]
        if let Some((mut terminate, mut interrupt)) = signals {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutdown signal received");
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
