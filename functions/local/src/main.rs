//! `tollgate`: every group's routes in one local HTTP server, on the embedded store by default.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;
use tollgate::{AppState, Config, Group};

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate LLM gateway: the local server, and a client of any Tollgate's API",
    long_about = "Tollgate LLM gateway.\n\nConfiguration comes from the environment: TOLLGATE_LISTEN, TOLLGATE_DATA_DIR, TOLLGATE_STORE, TOLLGATE_DYNAMODB_ENDPOINT, TOLLGATE_TABLE, TOLLGATE_SECRETS, TOLLGATE_SECRETS_ENDPOINT (see README.md)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    global: cli::Global,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every group on one port (the default command).
    Serve {
        /// With TOLLGATE_STORE=dynamodb, create the table (keys, GSIs, TTL) if it is missing.
        #[arg(long)]
        create_table: bool,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// The audit log, read from the configured store itself (not through a server).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk every hash chain of the audit log and name the first event edited, removed or
    /// moved; exits 1 when one is found.
    Verify,
}

#[tokio::main]
async fn main() -> ExitCode {
    tollgate::runtime::init_tracing();
    let Cli { command, global } = Cli::parse();
    let result = match command.unwrap_or(Command::Serve { create_table: false }) {
        Command::Openapi => serde_json::to_string_pretty(&tollgate::http::openapi()).map(|doc| println!("{doc}")).map_err(anyhow::Error::from),
        Command::Serve { create_table } => serve(create_table).await,
        Command::Audit { command: AuditCommand::Verify } => verify_audit().await,
        Command::Client(command) => cli::run(global, command).await,
    };
    // One line that names the problem and its fix; no stack trace.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tollgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(create_table: bool) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let listen = config.listen;
    let state = AppState::open(config.clone(), create_table).await?;
    tollgate::state::check_ready(&config).await?;
    let configured = tollgate::identity::accounts::is_configured(state.store.as_ref()).await?;
    // Budget events wait in the store's outbox until delivered; this process delivers them.
    state.spawn_background();
    let app = tollgate::http::app(state, &Group::ALL);
    // Bound before we say so: whoever reads "listening" can connect at once.
    let listener = tollgate::runtime::bind(listen).await?;
    if config.log_json {
        // Every line a JSON object, the banner too: log shippers read nothing else.
        tracing::info!(listen = %listen, store = ?config.store, data = %config.data_dir.display(), admin_exists = configured, "Tollgate listening");
        tollgate::runtime::serve(listener, app, shutdown_signal()).await?;
        tracing::info!("Tollgate stopped");
        return Ok(());
    }
    println!("Tollgate listening on http://{listen} (store: {:?}, data: {})", config.store, config.data_dir.display());
    println!("Dashboard: http://{listen}/");
    if !configured {
        println!(
            "No admin exists yet. Open the dashboard to create the first one, or:\n  curl -X POST http://{listen}/api/setup/first-admin \\\n    -H 'Content-Type: application/json' \\\n    -d '{{\"email\":\"admin@example.com\",\"password\":\"choose-a-long-password\"}}'"
        );
    }
    println!("Press Ctrl-C to stop.");
    tollgate::runtime::serve(listener, app, shutdown_signal()).await?;
    println!("Tollgate stopped.");
    Ok(())
}

/// `tollgate audit verify`: the chains as found, and the first broken event if there is one.
async fn verify_audit() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let store = tollgate::state::open_store(&config, false).await?;
    let verified = tollgate::audit::verify::verify(store.as_ref()).await?;
    for chain in &verified.chains {
        match (chain.first, chain.last) {
            (Some(first), Some(last)) => println!("chain {}: {} events, {first} to {last}", chain.shard, chain.events),
            _ => println!("chain {}: no events", chain.shard),
        }
    }
    match verified.broken {
        None => {
            println!("the audit log is intact");
            Ok(())
        }
        Some(broken) => anyhow::bail!("the audit log was tampered with: chain {}, event {}: {}", broken.shard, broken.seq, broken.problem),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            sig.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
