//! The `oidc-bff` command line: parse arguments, load the config, start
//! logging, serve. Everything else lives in the library.

use clap::{Parser, Subcommand};
use oidc_bff::app::AppState;
use oidc_bff::config;

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: glibc malloc costs about a fifth of the CPU of a proxied request
/// (arena locks between the runtime threads); mimalloc a few percent.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "oidc-bff",
    version,
    about = "OAuth2/OpenID Connect backend-for-frontend gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve(ConfigArg),
    /// Load and validate the config; print it with secrets redacted.
    CheckConfig(ConfigArg),
    /// Print a fresh 32-byte session key (base64url).
    GenerateKey,
    /// Run the whole stack on 127.0.0.1 for a first look: a development IdP,
    /// the gateway, a sample SPA and an echo API. Development only.
    #[cfg(feature = "dev")]
    Demo {
        /// Port of the gateway (the URL to open); 0 picks a free one.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Run only the development IdP, a Cognito hosted-UI look-alike, for SPA
    /// teams working locally. Development only: never expose it.
    #[cfg(feature = "dev")]
    DevIdp {
        /// The dev IdP's config (TOML; see config/dev-idp.example.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Allow a non-loopback listen address. Development only.
        #[arg(long)]
        insecure_listen_any: bool,
    },
}

#[derive(clap::Args, Default)]
struct ConfigArg {
    /// Config file; default $OIDC_BFF_CONFIG, then config/oidc-bff.toml.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| std::env::var_os("OIDC_BFF_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("config/oidc-bff.toml"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ConfigArg::default())) {
        Command::GenerateKey => {
            println!("{}", oidc_bff::session::generate_key());
            ExitCode::SUCCESS
        }
        Command::CheckConfig(arg) => match config::load(&arg.path()) {
            Ok(c) => {
                println!("# {}: ok\n{}", arg.path().display(), c.to_redacted_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: invalid configuration", arg.path().display());
                for p in e.problems() {
                    eprintln!("{p}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Serve(arg) => serve(arg),
        #[cfg(feature = "dev")]
        Command::Demo { port } => demo(port),
        #[cfg(feature = "dev")]
        Command::DevIdp {
            config,
            insecure_listen_any,
        } => dev_idp(&config, insecure_listen_any),
    }
}

/// The runtime of the development commands (the gateway builds its own).
#[cfg(feature = "dev")]
fn dev_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .map_err(|e| eprintln!("cannot start the runtime: {e}"))
        .ok()
}

#[cfg(feature = "dev")]
fn dev_idp(path: &std::path::Path, insecure_listen_any: bool) -> ExitCode {
    use oidc_bff::demo::dev_idp::{self, DevIdpConfig};
    let _log = oidc_bff::telemetry::init(config::LogFormat::Text, "info");
    let mut idp_config = match DevIdpConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    idp_config.insecure_listen_any |= insecure_listen_any;
    let Some(runtime) = dev_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let idp = match dev_idp::run(idp_config).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("oidc-bff dev-idp: {e}");
                return ExitCode::FAILURE;
            }
        };
        let users: Vec<String> = idp
            .state()
            .config()
            .users
            .iter()
            .map(|u| format!("{} / {}", u.username, u.password))
            .collect();
        println!("Development IdP (Cognito hosted-UI look-alike): for local development only");
        println!("  hosted UI: {}", idp.base_url());
        println!("  issuer:    {}", idp.issuer());
        println!("  discovery: {}", idp.discovery_url());
        println!("  JWKS:      {}", idp.jwks_url());
        println!("  users:     {}", users.join(", "));
        println!("  Stop with Ctrl-C.");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        shutdown_signal().await;
        match idp.shutdown().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("oidc-bff dev-idp: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(feature = "dev")]
fn demo(port: u16) -> ExitCode {
    let _log = oidc_bff::telemetry::init(config::LogFormat::Text, "info");
    let Some(runtime) = dev_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let demo = match oidc_bff::demo::run::start(port, shutdown_signal()).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("oidc-bff demo: {e}");
                return ExitCode::FAILURE;
            }
        };
        let users: Vec<String> = demo
            .users
            .iter()
            .map(|(u, p)| format!("{u} / {p}"))
            .collect();
        println!("oidc-bff demo is running (for local development only)");
        println!("  open:   {}", demo.url);
        println!(
            "  users:  {}  (alice is in the admins group; bob has no email)",
            users.join(", ")
        );
        println!(
            "  IdP:    {} (development IdP, Cognito-flavoured)",
            demo.idp_url
        );
        println!(
            "  API:    {} (echo API behind {}/api/)",
            demo.api_url, demo.url
        );
        println!("  Stop with Ctrl-C.");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let oidc_bff::Running { task, .. } = demo.running;
        match task.await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    })
}

fn serve(arg: ConfigArg) -> ExitCode {
    let config = match config::load(&arg.path()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: invalid configuration", arg.path().display());
            for p in e.problems() {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let _log = oidc_bff::telemetry::init(config.server.log_format, &config.server.log_level);
    if config.provider.insecure_allow_http {
        tracing::warn!("INSECURE: provider.insecure_allow_http is on; IdP traffic may travel unencrypted. Never use this in production.");
    }
    // This thread serves too (the first of `workers`); see `serve_workers`.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listen = config.server.listen;
        let workers = config.server.worker_count();
        let admin_listen = config.server.admin_listen;
        let state = match AppState::new(config) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        // Sockets handed over (socket activation) or bound here.
        let bound = match oidc_bff::inherited_listeners(listen, admin_listen) {
            Ok(Some((listeners, admin))) => {
                tracing::info!(
                    sockets = listeners.len() + 1,
                    "listening on inherited sockets"
                );
                tokio::net::TcpListener::from_std(admin).map(|a| (listeners, a))
            }
            Ok(None) => match (
                oidc_bff::bind_workers(listen, workers),
                tokio::net::TcpListener::bind(admin_listen).await,
            ) {
                (Ok(l), Ok(a)) => Ok((l, a)),
                (Err(e), _) | (_, Err(e)) => Err(e),
            },
            Err(e) => Err(e),
        };
        let (listeners, admin) = match bound {
            Ok(sockets) => sockets,
            Err(e) => {
                tracing::error!(error = %e, %listen, %admin_listen, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(workers = listeners.len(), "serving threads");
        let running =
            match oidc_bff::serve_workers(state, listeners, admin, shutdown_signal()).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve");
                    return ExitCode::FAILURE;
                }
            };
        match running.task.await {
            Ok(Ok(())) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
            Err(e) => {
                tracing::error!(error = %e, "server task failed");
                ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
