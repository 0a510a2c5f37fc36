//! `fapi-bank`: serve the sample bank API, or seed its demo data.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fapi_bank::api::{self, AppState};
use fapi_bank::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "fapi-bank",
    version,
    about = "Sample bank API for fapi-guard: accounts, balances, transactions and idempotent transfers \
             for the demo users. Runs behind Envoy and the fapi-guard plugin and trusts only the \
             x-fapi-* claim headers the plugin forwards (plain HTTP; never expose it directly).",
    after_help = "Logs go to stderr; filter with FAPI_BANK_LOG (tracing env-filter syntax, default info). \
                  The API is described in src/bank/README.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API over plain HTTP until SIGTERM or Ctrl-C; creates and seeds the database when
    /// it has no demo data yet.
    Serve {
        /// Address to listen on (host:port).
        #[arg(long, default_value = "127.0.0.1:8080", env = "FAPI_BANK_LISTEN")]
        listen: String,
        /// SQLite database file (created when missing).
        #[arg(long, default_value = "fapi-bank.db", env = "FAPI_BANK_DB")]
        db: PathBuf,
    },
    /// Create the demo users (user-taro, user-hanako), their accounts (taro-1, taro-2, hanako-1,
    /// hanako-2) and some history, where missing; prints what it created.
    Seed {
        /// SQLite database file (created when missing).
        #[arg(long, default_value = "fapi-bank.db", env = "FAPI_BANK_DB")]
        db: PathBuf,
        /// Delete all data first (transfers included): balances return to the seeded amounts.
        #[arg(long)]
        reset: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAPI_BANK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { listen, db } => serve(&listen, &db).await,
        Command::Seed { db, reset } => {
            let store = open(&db).await?;
            let r = store.seed(reset).await?;
            println!(
                "{}: {} accounts and {} transactions created{}",
                db.display(),
                r.accounts_created,
                r.transactions_created,
                if reset { " (after reset)" } else { "" }
            );
            Ok(())
        }
    }
}

async fn open(db: &Path) -> anyhow::Result<Store> {
    Store::open(db)
        .await
        .with_context(|| format!("database {}", db.display()))
}

async fn serve(listen: &str, db: &Path) -> anyhow::Result<()> {
    let store = open(db).await?;
    let seeded = store.seed(false).await?;
    if seeded.accounts_created > 0 {
        tracing::info!(
            accounts = seeded.accounts_created,
            transactions = seeded.transactions_created,
            "seeded demo data"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, db = %db.display(), "fapi-bank listening");
    let app = api::router(Arc::new(AppState { store }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
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
}
