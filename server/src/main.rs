//! The `referee-server` binary: parses flags, sets up logging, serves until Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use referee_server::{serve, AppState, Config};
use tracing_subscriber::EnvFilter;

fn init_logging() {
    // REFEREE_LOG_LEVEL (e.g. `debug`) wins over RUST_LOG; the default is `info`.
    let filter = std::env::var("REFEREE_LOG_LEVEL")
        .ok()
        .and_then(|level| EnvFilter::try_new(level.to_lowercase()).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journald gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("Shutting down");
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Its errors (the token file) name what they are about.
    let settings = config.settings()?;
    let listen = settings.listen;
    let data_dir = settings.storage.data_dir.clone();
    let (http, ws) = match settings.tls {
        Some(_) => ("https", "wss"),
        None => ("http", "ws"),
    };
    let state = AppState::new(settings).context("cannot open the data directory")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}: is another server using the port? Choose another with --listen"))?;
    tracing::info!(
        "referee-server {} listening on {http}://{addr} (WebSocket ingest at {ws}://{addr}/stream), data in {}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display(),
        addr = listener.local_addr().unwrap_or(listen),
    );
    serve(listener, state, shutdown_signal())
        .await
        .context("server failed")
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if config.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logging();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        // Once, on stderr (the log goes to stdout).
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
