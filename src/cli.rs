//! The `dcr-server` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use comfy_table::{Cell, Table};

use crate::clock::rfc3339;
use crate::config::Config;
use crate::operator::{ActError, Actor, ClientAction, Mode, client_summary};
use crate::sandbox::{RequestOptions, Sandbox};
use crate::store::{AuditLog, ClientStore};

/// Default config path, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "config/deployment.toml";

#[derive(Debug, Parser)]
#[command(
    name = "dcr-server",
    version,
    about = "OBIE DCR v3.2, v3.3 and v3.4 Dynamic Client Registration server"
)]
pub struct Cli {
    /// Path of deployment.toml. Relative paths inside it are relative to the working directory.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG, env = "DCR_CONFIG")]
    pub config: PathBuf,
    /// Log format: one JSON object per line (the default), or text for a terminal.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "json",
        env = "DCR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default). Applies pending migrations first.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Validate the config and the files it names, print the effective settings, exit 0 or 1.
    CheckConfig,
    /// The generated sandbox PKI.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Registered clients, straight from the database.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Provisioning events and their deliveries to webhooks.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Read the audit trail (registrations, updates, deletions, tokens, refusals), oldest first.
    Audit {
        /// Only this client's records.
        #[arg(long = "client")]
        client_id: Option<String>,
        /// Only records at or after this time: RFC 3339 (`2026-11-26T09:00:00Z`) or Unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Write a complete sandbox: test CA, server certificate, directory key and JWKS, one TPP.
    Init {
        /// Directory to write (default: `sandbox.dir` of the config, else certs/sandbox).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Public base URL of the server (default: `server.issuer` of the config).
        #[arg(long)]
        issuer: Option<String>,
        /// Replace an existing sandbox.
        #[arg(long)]
        force: bool,
    },
    /// Print a freshly signed registration JWT for the sandbox TPP.
    Request {
        #[arg(long)]
        dir: Option<PathBuf>,
        /// `private_key_jwt` or `tls_client_auth`.
        #[arg(long, default_value = "private_key_jwt")]
        auth_method: String,
        /// `PS256` or `ES256`.
        #[arg(long, default_value = "PS256")]
        alg: String,
        /// Request `aud` (default: the first configured audience, else the issuer).
        #[arg(long)]
        aud: Option<String>,
        /// The DCR version to sign for (`3.2`, `3.3`, `3.4`): POST it to
        /// /open-banking/v<version>/register.
        #[arg(long, default_value = "3.2")]
        version: crate::domain::SpecVersion,
        /// Register the CIBA grant type with its `backchannel_*` claims (v3.3 and later).
        #[arg(long)]
        ciba: bool,
    },
    /// Print a `private_key_jwt` client assertion for the token endpoint.
    ClientAssertion {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Assertion `aud` (default: the token endpoint).
        #[arg(long)]
        aud: Option<String>,
        #[arg(long, default_value = "PS256")]
        alg: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List events, oldest first, with where each delivery stands.
    List {
        /// Only events with a failed delivery.
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        json: bool,
    },
    /// Deliver failed events again (from now, for another `events.max_age_secs`).
    Retry {
        /// The event's id (its CloudEvents `id`).
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        event_id: Option<String>,
        /// Every failed delivery.
        #[arg(long)]
        all_failed: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// List registered clients.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one client's registration.
    Show {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a client and every token issued to it.
    Delete {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a client: it gets no tokens, and its live tokens are revoked.
    Disable {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Enable a disabled client again (its old tokens stay revoked).
    Enable {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // One line that names the key and the problem.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = Config::load(&cli.config)?;
            let server = crate::app::Server::bind(config, axum::Router::new()).await?;
            tokio::spawn(crate::app::reload::on_sighup(
                server.reloader(),
                cli.config.clone(),
            ));
            server.run(crate::net::listener::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = Config::load(&cli.config)?;
            let store = crate::store::open(&config).await?;
            println!("migrations applied ({})", store.backend_name());
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => check_config(&cli.config).await,
        Command::Sandbox(cmd) => sandbox(&cli.config, cmd),
        Command::Clients(cmd) => clients(&cli.config, cmd).await,
        Command::Events(cmd) => events(&cli.config, cmd).await,
        Command::Audit {
            client_id,
            since,
            json,
        } => audit(&cli.config, client_id, since, json).await,
    }
}

async fn check_config(path: &Path) -> Result<ExitCode> {
    crate::pki::tls::install_default_provider();
    let config = Config::load(path)?;
    let pending_sandbox = config.sandbox_enabled() && !crate::sandbox::exists(&config.sandbox.dir);
    let mut as_material = None;
    if pending_sandbox {
        eprintln!(
            "note: the sandbox in {} does not exist yet; `serve` creates it, so its files are not checked",
            config.sandbox.dir.display()
        );
    } else {
        // What `serve` and a reload load, checked the same way; CRL URLs are fetched once
        // (the running server's refresh age is the dcr_crl_age_seconds metric).
        let crls = crate::pki::crl::CrlUrls::new();
        let material = crate::material::Material::load(&config, &crls)?;
        as_material = material.authorization_server.clone();
        let urls = crate::pki::crl_fetch::urls(&config);
        if !urls.is_empty() {
            let client = crate::pki::crl_fetch::client(&config)?;
            let issuers = material.tls.crl_issuers();
            crate::pki::crl_fetch::fetch_due(&config, &crls, &client, issuers).await;
            material.with_url_crls(&crls)?;
        }
        for url in &urls {
            let key = crate::pki::crl_fetch::key_of(&config, url);
            match (crls.current(url.as_str()), crls.last_error(url.as_str())) {
                (Some(crl), _) => eprintln!(
                    "crl: {url}: fetched; thisUpdate {}, nextUpdate {}",
                    rfc3339(crl.crl.this_update),
                    crl.crl
                        .next_update
                        .map_or_else(|| "none".to_string(), rfc3339)
                ),
                (None, error) => eprintln!(
                    "warning: crl: {url}: {key} cannot be used ({}); `serve` retries in the background and judges its CA's certificates by server.tls.ocsp.mode",
                    error.unwrap_or_default()
                ),
            }
        }
    }
    let ocsp = &config.server.tls.ocsp;
    eprintln!(
        "ocsp: mode {}{}",
        ocsp.mode.as_str(),
        match (ocsp.mode, &ocsp.responder_url) {
            (crate::config::RevocationMode::Off, _) => String::new(),
            (_, None) => ", responders from each certificate's AIA".to_string(),
            (_, Some(url)) => format!(", responder_url {url} for certificates without AIA"),
        }
    );
    check_authorization_server(&config, as_material).await?;
    print!("{}", config.effective_toml());
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    if !pending_sandbox {
        for warning in crate::material::trust_warnings(&config)? {
            eprintln!("warning: {warning}");
        }
    }
    eprintln!("config OK: {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `rfc7591` mode: reads the AS's discovery as `serve` does and prints the endpoints it would
/// use (no secret). `material` is the AS's as `Material::load` read it, if it ran.
async fn check_authorization_server(
    config: &Config,
    material: Option<crate::material::AsMaterial>,
) -> Result<()> {
    use crate::authorization_server::{Endpoints, discover, settings};
    let a = &config.authorization_server;
    if !a.is_rfc7591() {
        eprintln!("authorization server: {}", a.mode.as_str());
        return Ok(());
    }
    // With the sandbox still to be made, `Material::load` did not run: the AS's files are
    // read here alone.
    let material = match material {
        Some(m) => m,
        None => crate::material::AsMaterial::load(a)?
            .context("authorization_server: no material in rfc7591 mode")?,
    };
    let urls = a.urls();
    let issuer = urls
        .issuer
        .as_ref()
        .context("authorization_server.issuer: required in rfc7591 mode")?;
    let unusable = |e: crate::authorization_server::AsError| {
        anyhow::anyhow!(
            "authorization_server.issuer {issuer}: the authorization server's discovery \
             ({}/.well-known/openid-configuration) cannot be used: {e}",
            issuer.as_str().trim_end_matches('/')
        )
    };
    let discovered = discover(&material.http, issuer, a.timeout())
        .await
        .map_err(unusable)?;
    let given = Endpoints {
        registration: urls.registration_endpoint.as_ref(),
        introspection: urls.introspection_endpoint.as_ref(),
        token: urls.token_endpoint.as_ref(),
    };
    let client = a
        .client_id
        .clone()
        .map(|id| (id, material.client_secret.clone()));
    let s = settings(
        issuer,
        given,
        &discovered,
        material.initial_access_token.clone(),
        client,
        a.timeout(),
    )
    .map_err(unusable)?;
    let from = |given: Option<&url::Url>| {
        if given.is_some() {
            "configured"
        } else {
            "discovered"
        }
    };
    eprintln!("authorization server: rfc7591, issuer {issuer} (discovery read)");
    eprintln!(
        "authorization server: registration_endpoint {} ({})",
        s.registration_endpoint,
        from(given.registration)
    );
    match &s.introspection {
        Some(i) => eprintln!(
            "authorization server: introspection_endpoint {} ({}), as client_id {}",
            i.endpoint,
            from(given.introspection),
            crate::text::printable(&i.client_id, 100)
        ),
        None => eprintln!(
            "warning: authorization server: no introspection_endpoint (neither authorization_server.introspection_endpoint nor the discovery names one): management tokens cannot be checked"
        ),
    }
    match &s.token_endpoint {
        Some(t) => eprintln!(
            "authorization server: token_endpoint {t} ({})",
            from(given.token)
        ),
        None => eprintln!("authorization server: token_endpoint none"),
    }
    eprintln!(
        "authorization server: initial access token {}, registration access tokens stored {}",
        if s.initial_access_token.is_some() {
            "sent"
        } else {
            "none"
        },
        if material.storage_key.is_some() {
            "encrypted"
        } else {
            "unencrypted"
        }
    );
    Ok(())
}

/// The config, if there is a readable one; sandbox commands also work without it.
fn optional_config(path: &Path) -> Result<Option<Config>> {
    if path.exists() {
        Ok(Some(Config::load(path)?))
    } else {
        Ok(None)
    }
}

fn sandbox_dir(dir: Option<PathBuf>, config: Option<&Config>) -> PathBuf {
    dir.or_else(|| config.map(|c| c.sandbox.dir.clone()))
        .unwrap_or_else(|| PathBuf::from("certs/sandbox"))
}

fn sandbox(config_path: &Path, cmd: SandboxCommand) -> Result<ExitCode> {
    let config = optional_config(config_path)?;
    let config_issuer = config.as_ref().map(|c| c.issuer_base().to_string());
    match cmd {
        SandboxCommand::Init {
            dir,
            issuer: issuer_flag,
            force,
        } => {
            let dir = sandbox_dir(dir, config.as_ref());
            if crate::sandbox::exists(&dir) && !force {
                eprintln!(
                    "a sandbox exists already in {}; use --force to replace it",
                    dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let issuer = issuer_flag
                .or(config_issuer)
                .unwrap_or_else(|| "https://localhost:8243".into());
            let info = crate::sandbox::init(&dir, &issuer)?;
            println!("sandbox written to {}", dir.display());
            println!("org_id      = {}", info.org_id);
            println!("software_id = {}", info.software_id);
            println!("jwks        = {}", info.software_jwks_endpoint);
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Request {
            dir,
            auth_method,
            alg,
            aud,
            version,
            ciba,
        } => {
            let sandbox = Sandbox::load(&sandbox_dir(dir, config.as_ref()))?;
            let aud = aud
                .or_else(|| {
                    config
                        .as_ref()
                        .and_then(|c| c.open_banking.dcr.audience.first().cloned())
                })
                .or(config_issuer)
                .unwrap_or_else(|| sandbox.tpp.issuer.clone());
            let jwt = sandbox.request(&RequestOptions {
                auth_method,
                alg,
                aud,
                version,
                ciba,
                ..RequestOptions::default()
            })?;
            println!("{jwt}");
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::ClientAssertion {
            client_id,
            dir,
            aud,
            alg,
        } => {
            let sandbox = Sandbox::load(&sandbox_dir(dir, config.as_ref()))?;
            let issuer = config_issuer.unwrap_or_else(|| sandbox.tpp.issuer.clone());
            let aud = aud.unwrap_or_else(|| format!("{issuer}/token"));
            println!("{}", sandbox.client_assertion(&client_id, &aud, &alg)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The answer of delete/disable/enable, as a line or as JSON.
fn done(json: bool, client_id: &str, ok: bool, what: &str) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::json!({"client_id": client_id, "result": if ok { what } else { "not_found" }})
        );
    } else if ok {
        println!("{what} {client_id}");
    } else {
        eprintln!("no client {client_id}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `clients delete|disable|enable`, as the admin API does them.
async fn act(
    store: &crate::store::Database,
    client_id: String,
    json: bool,
    action: ClientAction,
    mode: Mode,
) -> Result<ExitCode> {
    let ok = match crate::operator::act(store, &client_id, action, Actor::Cli, mode).await {
        Ok(ok) => ok,
        Err(ActError::Store(e)) => return Err(e.into()),
        Err(refused) => {
            eprintln!("{refused}");
            return Ok(ExitCode::FAILURE);
        }
    };
    Ok(done(json, &client_id, ok, action.result()))
}

async fn clients(config_path: &Path, cmd: ClientsCommand) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = crate::store::open(&config).await?;
    let mode = if config.authorization_server.is_rfc7591() {
        Mode::BehindAnAs
    } else {
        Mode::Embedded
    };
    match cmd {
        ClientsCommand::List { json } => {
            let clients = store.list_clients().await?;
            if json {
                let rows: Vec<_> = clients.iter().map(client_summary).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut table = plain_table(&[
                    "client_id",
                    "software_id",
                    "org_id",
                    "auth_method",
                    "version",
                    "enabled",
                    "created",
                ]);
                for c in &clients {
                    table.add_row(vec![
                        Cell::new(&c.client_id),
                        Cell::new(&c.software_id),
                        Cell::new(&c.org_id),
                        Cell::new(c.token_endpoint_auth_method),
                        Cell::new(c.dcr_version),
                        Cell::new(if c.enabled { "yes" } else { "no" }),
                        Cell::new(rfc3339(c.created_at)),
                    ]);
                }
                println!("{}", table.trim_fmt());
                eprintln!("{} client(s)", clients.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientsCommand::Show { client_id, json } => match store.get_client(&client_id).await? {
            Some(c) => {
                let metadata: serde_json::Value =
                    serde_json::from_str(&c.metadata).unwrap_or(serde_json::Value::Null);
                if json {
                    let mut out = client_summary(&c);
                    out["metadata"] = metadata;
                    println!("{}", serde_json::to_string_pretty(&out)?);
                } else {
                    let summary = client_summary(&c);
                    for (key, value) in summary.as_object().into_iter().flatten() {
                        println!("{key:<28}{}", plain(value));
                    }
                    for (key, value) in metadata.as_object().into_iter().flatten() {
                        if key != "client_id" && key != "software_id" {
                            println!("{key:<28}{}", plain(value));
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            None => Ok(done(json, &client_id, false, "")),
        },
        ClientsCommand::Delete { client_id, json } => {
            act(&store, client_id, json, ClientAction::Delete, mode).await
        }
        ClientsCommand::Disable { client_id, json } => {
            act(&store, client_id, json, ClientAction::Disable, mode).await
        }
        ClientsCommand::Enable { client_id, json } => {
            act(&store, client_id, json, ClientAction::Enable, mode).await
        }
    }
}

/// A table for the terminal: the header line, then a line a row; columns left-aligned, two
/// spaces apart and as wide as their widest cell; no borders, colours or wrapping, so that a
/// script can grep it.
fn plain_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_header(header.to_vec());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// A JSON value for a table cell: strings without quotes, lists joined.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// `--since`: RFC 3339 or Unix seconds.
fn parse_since(s: &str) -> Result<i64> {
    if let Ok(unix) = s.parse::<i64>() {
        return Ok(unix);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .with_context(|| {
            format!("--since {s}: not RFC 3339 (2026-11-26T09:00:00Z) or Unix seconds")
        })
}

async fn events(config_path: &Path, cmd: EventsCommand) -> Result<ExitCode> {
    use crate::store::{EventFilter, EventStore};
    let config = Config::load(config_path)?;
    let store = crate::store::open(&config).await?;
    match cmd {
        EventsCommand::List { failed, json } => {
            let mut all = Vec::new();
            let mut filter = EventFilter {
                failed,
                limit: 1000,
                ..EventFilter::default()
            };
            loop {
                let page = store.list_events(&filter).await?;
                let Some((last, _)) = page.last() else { break };
                filter.after = last.id;
                all.extend(page);
            }
            if json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|(e, deliveries)| crate::operator::event_json(e, deliveries))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut table =
                    plain_table(&["event_id", "time", "type", "client_id", "deliveries"]);
                for (e, deliveries) in &all {
                    let states: Vec<String> = deliveries
                        .iter()
                        .map(|d| {
                            let error = d
                                .last_error
                                .as_deref()
                                .map(|x| format!(": {x}"))
                                .unwrap_or_default();
                            format!("{} {} ({} attempts{error})", d.webhook, d.state, d.attempts)
                        })
                        .collect();
                    table.add_row(vec![
                        Cell::new(&e.event_id),
                        Cell::new(rfc3339(e.at)),
                        Cell::new(e.event_type),
                        Cell::new(&e.client_id),
                        Cell::new(if states.is_empty() {
                            "-".to_string()
                        } else {
                            states.join("; ")
                        }),
                    ]);
                }
                println!("{}", table.trim_fmt());
                eprintln!("{} event(s)", all.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Retry {
            event_id,
            all_failed: _,
        } => {
            let n =
                crate::operator::retry_events(&store, event_id.as_deref(), &config.events).await?;
            println!(
                "{n} failed deliver{} pending again",
                if n == 1 { "y is" } else { "ies are" }
            );
            Ok(if n == 0 && event_id.is_some() {
                eprintln!("no failed delivery of that event to a configured webhook");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

async fn audit(
    config_path: &Path,
    client_id: Option<String>,
    since: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let since = since.as_deref().map(parse_since).transpose()?;
    let config = Config::load(config_path)?;
    let store = crate::store::open(&config).await?;
    let records = store.list_audit(client_id.as_deref(), since).await?;
    if json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
                let mut row = serde_json::to_value(r).unwrap_or_default();
                row["time"] = rfc3339(r.at).into();
                if let Some(detail) = r.detail.as_deref() {
                    row["detail"] = serde_json::from_str(detail).unwrap_or_else(|_| detail.into());
                }
                row
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut table = plain_table(&[
            "time",
            "action",
            "outcome",
            "client_id",
            "software_id",
            "version",
            "error_code",
            "interaction_id",
        ]);
        let cell = |v: &Option<String>| Cell::new(v.as_deref().unwrap_or("-"));
        for r in &records {
            table.add_row(vec![
                Cell::new(rfc3339(r.at)),
                Cell::new(r.action),
                Cell::new(r.outcome),
                cell(&r.client_id),
                cell(&r.software_id),
                Cell::new(r.dcr_version.map_or("-", |v| v.as_str())),
                Cell::new(r.error_code.map_or("-", |c| c.as_str())),
                cell(&r.interaction_id),
            ]);
        }
        println!("{}", table.trim_fmt());
        eprintln!("{} record(s)", records.len());
    }
    Ok(ExitCode::SUCCESS)
}
