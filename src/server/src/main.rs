//! `fapi-as`: serve, manage clients, seed demo users, rotate keys.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fapi_as::app::{self, AppState};
use fapi_as::clock::Clock;
use fapi_as::config::Config;
use fapi_as::keys::Keys;
use fapi_as::random::Random;
use fapi_as::serve::ConnLimits;
use fapi_as::store::{Account, ClientMetadata, Store, User};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "fapi-as",
    version,
    about = "FAPI 2.0 authorization server for fapi-guard"
)]
struct Cli {
    /// Configuration file (TOML); every value can be overridden by FAPI_AS_<SECTION>_<KEY>.
    #[arg(
        long,
        short,
        global = true,
        default_value = "fapi-as.toml",
        env = "FAPI_AS_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

// clap subcommands: parsed once, their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server (TLS, mTLS and health listeners) until SIGTERM or Ctrl-C.
    Serve,
    /// Manage registered clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Create the demo users and their accounts (idempotent); prints their sign-in details.
    Seed,
    /// Rotate signing keys: next becomes current, current is retired (still published). A running
    /// server loads the folder again on SIGHUP (`kill -HUP <pid>`), without a restart.
    RotateKeys,
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum ClientCommand {
    /// Register (or replace) a client.
    Add {
        #[arg(long)]
        client_id: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Exact redirect URIs (repeat for several).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// private_key_jwt, tls_client_auth or self_signed_tls_client_auth.
        #[arg(long, default_value = "private_key_jwt")]
        auth_method: String,
        /// The client's public keys (JWKS file): for private_key_jwt, self_signed_tls_client_auth, encryption.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// The client's keys by reference (an https URL on a host in registration.jwks_uri_hosts).
        #[arg(long)]
        jwks_uri: Option<String>,
        /// RFC 8705 tls_client_auth_subject_dn.
        #[arg(long)]
        subject_dn: Option<String>,
        /// How tokens are bound: mtls or dpop.
        #[arg(long, default_value = "mtls")]
        binding: String,
        /// Scopes the client may ask for.
        #[arg(long, default_value = "openid accounts")]
        scope: String,
        /// Grant types (repeat): authorization_code, refresh_token, client_credentials.
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        #[arg(long)]
        require_signed_request_object: bool,
        /// fapi2, fapi2-message-signing or fapi1-advanced.
        #[arg(long, default_value = "fapi2")]
        profile: String,
        /// JARM signing alg (authorization_signed_response_alg): only the server's key alg ([keys] alg).
        #[arg(long)]
        authorization_signed_response_alg: Option<String>,
        /// Encrypt JARM responses (authorization_encrypted_response_alg): ECDH-ES, to a P-256 key of
        /// --jwks marked for encryption (use "enc"); needs --authorization-encrypted-response-enc.
        #[arg(long)]
        authorization_encrypted_response_alg: Option<String>,
        /// A256GCM or A128GCM.
        #[arg(long)]
        authorization_encrypted_response_enc: Option<String>,
        /// Encrypt id_tokens (id_token_encrypted_response_alg): ECDH-ES, like JARM responses.
        #[arg(long)]
        id_token_encrypted_response_alg: Option<String>,
        /// A256GCM or A128GCM.
        #[arg(long)]
        id_token_encrypted_response_enc: Option<String>,
        /// RFC 9396 authorization_details types the client may ask for (repeat): payment_initiation.
        #[arg(long = "authorization-details-type")]
        authorization_details_types: Vec<String>,
    },
    /// List clients as JSON lines.
    List,
    /// Remove a client and revoke its grants, refresh tokens and access tokens (they reach the revocation feed).
    Remove { client_id: String },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::load(&cli.config)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(cli.command, config))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Client(c) => client(c, &config).await,
        Command::Seed => seed(&config).await,
        Command::RotateKeys => {
            Keys::rotate(&config.keys.dir, &config.keys.alg)?;
            println!(
                "keys rotated in {}; send SIGHUP to a running fapi-as to load them",
                config.keys.dir.display()
            );
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    fapi_as::tls::install_provider();
    let store = Store::connect(&config.database.url)
        .await
        .with_context(|| format!("database {}", config.database.url))?;
    let keys = Keys::load_or_create(&config.keys.dir, &config.keys.alg)?;
    let nonce_secret = nonce_secret(&config)?;
    let (plain_tls, mtls) = fapi_as::tls::configs(&config.tls.cert, &config.tls.key)?;
    let https = tokio::net::TcpListener::bind(&config.listen.https)
        .await
        .with_context(|| config.listen.https.clone())?;
    let mtls_l = tokio::net::TcpListener::bind(&config.listen.mtls)
        .await
        .with_context(|| config.listen.mtls.clone())?;
    let http = tokio::net::TcpListener::bind(&config.listen.http)
        .await
        .with_context(|| config.listen.http.clone())?;
    let state = Arc::new(AppState::new(
        config,
        store.clone(),
        keys,
        &nonce_secret,
        Clock::system(),
        Random::system(),
    )?);
    state
        .metrics
        .started
        .store(state.clock.now() as u64, std::sync::atomic::Ordering::Relaxed);
    let router = app::router(state.clone());
    let (tx, rx) = tokio::sync::watch::channel(false);
    reload_keys_on_sighup(state.clone());
    tracing::info!(issuer = %state.config.issuer, https = %state.config.listen.https, mtls = %state.config.listen.mtls, http = %state.config.listen.http, "fapi-as listening");
    let sweeper = {
        let store = store.clone();
        let clock = state.clock.clone();
        let mut rx = rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                        if let Err(e) = store.sweep(clock.now()).await {
                            tracing::warn!(error = %e, "sweep failed");
                        }
                    }
                    _ = rx.changed() => break,
                }
            }
        })
    };
    let tls_limits = ConnLimits::tls(&state.config.limits);
    let m = &state.metrics;
    let tasks = vec![
        tokio::spawn(fapi_as::serve::serve_tls(
            https,
            plain_tls,
            router.clone(),
            tls_limits,
            m.https.clone(),
            rx.clone(),
        )),
        tokio::spawn(fapi_as::serve::serve_tls(
            mtls_l,
            mtls,
            router,
            tls_limits,
            m.mtls.clone(),
            rx.clone(),
        )),
        tokio::spawn(fapi_as::serve::serve_plain(
            http,
            app::health_router(),
            ConnLimits::health(&state.config.limits),
            m.health.clone(),
            rx,
        )),
    ];
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = sweeper.await;
    Ok(())
}

/// `fapi-as rotate-keys` writes the key folder; SIGHUP makes a running server load it again
/// (signing and verifying keys swapped together, `AppState::reload_keys`). A folder that does not
/// load leaves the keys in use as they were.
fn reload_keys_on_sighup(state: Arc<AppState>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("SIGHUP cannot be watched: keys are loaded at start only");
            return;
        };
        while hup.recv().await.is_some() {
            let s = state.clone();
            match tokio::task::spawn_blocking(move || s.reload_keys()).await {
                Ok(Ok(())) => {
                    tracing::info!(kid = %state.keys.get().current.kid(), "signing keys loaded again (SIGHUP)")
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "SIGHUP: the key folder did not load; keys unchanged")
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: key reload task failed; keys unchanged"),
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The DPoP nonce key, shared by instances through the key folder.
fn nonce_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    let path = config.keys.dir.join("dpop-nonce.secret");
    if let Ok(b) = std::fs::read(&path) {
        if b.len() >= 32 {
            return Ok(b);
        }
    }
    std::fs::create_dir_all(&config.keys.dir)?;
    let secret = Random::system().token(32)?.into_bytes();
    std::fs::write(&path, &secret).with_context(|| path.display().to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(secret)
}

async fn client(c: ClientCommand, config: &Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database.url).await?;
    match c {
        ClientCommand::Add {
            client_id,
            name,
            redirect_uris,
            auth_method,
            jwks,
            jwks_uri,
            subject_dn,
            binding,
            scope,
            grant_types,
            require_signed_request_object,
            profile,
            authorization_signed_response_alg,
            authorization_encrypted_response_alg,
            authorization_encrypted_response_enc,
            id_token_encrypted_response_alg,
            id_token_encrypted_response_enc,
            authorization_details_types,
        } => {
            if let Some(bad) = authorization_details_types
                .iter()
                .find(|t| !fapi_as::authorization_details::SUPPORTED_TYPES.contains(&t.as_str()))
            {
                anyhow::bail!(
                    "authorization details type {bad} is not supported (supported: {})",
                    fapi_as::authorization_details::SUPPORTED_TYPES.join(", ")
                );
            }
            if ![
                "private_key_jwt",
                "tls_client_auth",
                "self_signed_tls_client_auth",
            ]
            .contains(&auth_method.as_str())
            {
                anyhow::bail!("auth method {auth_method} is not allowed for FAPI clients (private_key_jwt, tls_client_auth, self_signed_tls_client_auth)");
            }
            if !["mtls", "dpop"].contains(&binding.as_str()) {
                anyhow::bail!("binding must be mtls or dpop");
            }
            let jwks = match jwks {
                Some(p) => Some(
                    serde_json::from_str(
                        &std::fs::read_to_string(&p).with_context(|| p.display().to_string())?,
                    )
                    .with_context(|| p.display().to_string())?,
                ),
                None => None,
            };
            if auth_method != "tls_client_auth" && jwks.is_none() && jwks_uri.is_none() {
                anyhow::bail!("{auth_method} needs the client's keys: --jwks FILE or --jwks-uri URL");
            }
            if jwks.is_some() && jwks_uri.is_some() {
                anyhow::bail!("give --jwks or --jwks-uri, not both (RFC 7591 §2)");
            }
            if let Some(u) = &jwks_uri {
                fapi_as::client_jwks::ClientJwks::new(&config.registration, Clock::system())?
                    .check(u)
                    .map_err(|e| anyhow::anyhow!(e))?;
            }
            if let Some(alg) = &authorization_signed_response_alg {
                if *alg != config.keys.alg {
                    anyhow::bail!(
                        "authorization_signed_response_alg must be {}, the algorithm of the server's keys",
                        config.keys.alg
                    );
                }
            }
            for (what, alg, enc) in [
                (
                    "authorization",
                    &authorization_encrypted_response_alg,
                    &authorization_encrypted_response_enc,
                ),
                (
                    "id_token",
                    &id_token_encrypted_response_alg,
                    &id_token_encrypted_response_enc,
                ),
            ] {
                if jwks_uri.is_some() && alg.is_some() && enc.is_some() {
                    // Keys at the jwks_uri are fetched when needed; only the algorithms count now.
                    if !fapi_as::jwe::supported(alg.as_deref().unwrap_or(""), enc.as_deref().unwrap_or("")) {
                        anyhow::bail!("{what} encryption supports ECDH-ES with A256GCM or A128GCM");
                    }
                    continue;
                }
                fapi_as::backchannel::register::check_encryption(
                    what,
                    alg.as_deref(),
                    enc.as_deref(),
                    jwks.as_ref(),
                )
                .map_err(|e| anyhow::anyhow!(e))?;
            }
            let meta = ClientMetadata {
                client_name: if name.is_empty() { client_id.clone() } else { name },
                client_id,
                redirect_uris,
                token_endpoint_auth_method: auth_method,
                jwks,
                jwks_uri,
                tls_client_auth_subject_dn: subject_dn,
                token_binding: binding,
                scope,
                grant_types: if grant_types.is_empty() {
                    vec!["authorization_code".into(), "refresh_token".into()]
                } else {
                    grant_types
                },
                require_signed_request_object,
                profile,
                authorization_signed_response_alg,
                id_token_encrypted_response_alg,
                id_token_encrypted_response_enc,
                authorization_encrypted_response_alg,
                authorization_encrypted_response_enc,
                authorization_details_types,
            };
            store.put_client(&meta, Clock::system().now()).await?;
            println!("client {} registered", meta.client_id);
        }
        ClientCommand::List => {
            for c in store.clients().await? {
                println!("{}", serde_json::to_string(&c)?);
            }
        }
        ClientCommand::Remove { client_id } => {
            if store.delete_client(&client_id, Clock::system().now_ms()).await? {
                println!("client {client_id} removed; its grants and tokens are revoked");
            } else {
                anyhow::bail!("no client {client_id}");
            }
        }
    }
    Ok(())
}

/// Demo users: 山田太郎 (taro) and Hanako Suzuki (hanako), each with two accounts. Their TOTP secrets
/// are fixed so the demo walkthrough can print codes; real deployments enrol users differently.
pub const DEMO_USERS: &[(&str, &str, &str, &str)] = &[
    (
        "user-taro",
        "taro",
        "山田 太郎",
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    ),
    (
        "user-hanako",
        "hanako",
        "Hanako Suzuki",
        "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU",
    ),
];
pub const DEMO_PASSWORD: &str = "demo-password-2026";

async fn seed(config: &Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database.url).await?;
    for (id, username, name, totp) in DEMO_USERS {
        store
            .put_user(&User {
                user_id: id.to_string(),
                username: username.to_string(),
                display_name: name.to_string(),
                password_hash: fapi_as::password::hash(&Random::system(), DEMO_PASSWORD)?,
                totp_secret: Some(totp.to_string()),
            })
            .await?;
        for (n, (label, balance)) in [
            ("普通預金 Ordinary", 1_250_000i64),
            ("貯蓄預金 Savings", 3_000_000),
        ]
        .iter()
        .enumerate()
        {
            store
                .put_account(&Account {
                    account_id: format!("{username}-{}", n + 1),
                    user_id: id.to_string(),
                    name: label.to_string(),
                    currency: "JPY".into(),
                    balance: *balance,
                })
                .await?;
        }
        println!("user {username} ({name}): password {DEMO_PASSWORD}, TOTP secret {totp}");
    }
    Ok(())
}
