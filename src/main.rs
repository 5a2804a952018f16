//! The `oidc-bff` command line: parse arguments, load the config, start
//! logging, serve. Everything else lives in the library.

use clap::{Parser, Subcommand};
use oidc_bff::app::AppState;
use oidc_bff::config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "oidc-bff", version, about = "OAuth2/OpenID Connect backend-for-frontend gateway")]
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
    }
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
    oidc_bff::telemetry::init(config.server.log_format, &config.server.log_level);
    if config.provider.insecure_allow_http {
        tracing::warn!("INSECURE: provider.insecure_allow_http is on; IdP traffic may travel unencrypted. Never use this in production.");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listen = config.server.listen;
        let admin_listen = config.server.admin_listen;
        let state = match AppState::new(config) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        let (listener, admin) = match (tokio::net::TcpListener::bind(listen).await, tokio::net::TcpListener::bind(admin_listen).await) {
            (Ok(l), Ok(a)) => (l, a),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, %listen, %admin_listen, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let running = match oidc_bff::serve(state, listener, admin, shutdown_signal()).await {
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
