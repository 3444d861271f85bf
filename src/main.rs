//! The `inboxd` binary: parse arguments, load config, set up logging, dispatch.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use inboxd::cli::{Cli, Command};
use inboxd::config::{Config, LogFormat};
use inboxd::{app, commands, logging};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    inboxd::service::malloc::apply();
    let cli = Cli::parse();
    if let Command::Inspect { file, json } = &cli.command {
        return commands::inspect(file, *json);
    }
    let mut config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(err) => {
                eprintln!("inboxd: {err}");
                return ExitCode::from(78); // EX_CONFIG
            }
        },
        None => Config::embedded_default(),
    };
    if let Some(format) = &cli.log_format {
        config.log_format = if format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
    }
    if let Some(level) = &cli.log_level {
        config.log_level = level.clone();
    }
    logging::init(config.log_format, &config.log_level);
    install_panic_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("inboxd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli.command, config));
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("inboxd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let shutdown = CancellationToken::new();
            let reload = Arc::new(Notify::new());
            tokio::spawn(watch_signals(shutdown.clone(), Arc::clone(&reload)));
            app::run(config, shutdown, Some(reload)).await?;
            Ok(ExitCode::SUCCESS)
        }
        other => commands::run(other, config).await,
    }
}

/// SIGTERM and SIGINT cancel the shutdown token; SIGHUP asks for a config reload.
async fn watch_signals(shutdown: CancellationToken, reload: Arc<Notify>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); shutdown.cancel(); return; }
            _ = int.recv() => { tracing::info!("SIGINT received"); shutdown.cancel(); return; }
            _ = hup.recv() => { tracing::info!("SIGHUP received"); reload.notify_one(); }
        }
    }
}

/// A panicking task must not leave the daemon limping on: log it and abort, so systemd restarts it in a
/// known state (nothing half-written survives: batches are transactions).
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic; aborting");
        default(info);
        std::process::abort();
    }));
}
