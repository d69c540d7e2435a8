//! The `dcr-server` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::sandbox::{RequestOptions, Sandbox};
use crate::store::{AuditRecord, Store};

/// Default config path, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "config/deployment.toml";

#[derive(Debug, Parser)]
#[command(
    name = "dcr-server",
    version,
    about = "OBIE DCR v3.2 Dynamic Client Registration server"
)]
pub struct Cli {
    /// Path of deployment.toml. Relative paths inside it are relative to the working directory.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG, env = "DCR_CONFIG")]
    pub config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
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
pub enum ClientsCommand {
    /// List registered clients.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one client's registration.
    Show { client_id: String },
    /// Delete a client and every token issued to it.
    Delete { client_id: String },
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
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = Config::load(&cli.config)?;
            let server = crate::server::Server::bind(config, axum::Router::new()).await?;
            server.run(crate::server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = Config::load(&cli.config)?;
            let store = crate::server::open_store(&config).await?;
            println!("migrations applied ({})", store.backend_name());
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => check_config(&cli.config),
        Command::Sandbox(cmd) => sandbox(&cli.config, cmd),
        Command::Clients(cmd) => clients(&cli.config, cmd).await,
    }
}

fn check_config(path: &Path) -> Result<ExitCode> {
    crate::tls::install_default_provider();
    let config = Config::load(path)?;
    let pending_sandbox = config.sandbox_enabled() && !crate::sandbox::exists(&config.sandbox.dir);
    if pending_sandbox {
        eprintln!(
            "note: the sandbox in {} does not exist yet; `serve` creates it, so its files are not checked",
            config.sandbox.dir.display()
        );
    } else {
        check_files(&config)?;
    }
    print!("{}", config.effective_toml());
    eprintln!("config OK: {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Every file the config names exists and parses as what it should be.
pub fn check_files(config: &Config) -> Result<()> {
    for (key, file) in config.named_files() {
        if !file.is_file() {
            bail!("{key} = {}: no such file", file.display());
        }
    }
    crate::tls::server_config(&config.server.tls)?;
    for (i, issuer) in config.open_banking.dcr.ssa_issuer.iter().enumerate() {
        if issuer.jwks_is_url() {
            continue;
        }
        let key = format!("open_banking.dcr.ssa_issuer[{i}].jwks");
        let text = std::fs::read_to_string(&issuer.jwks)
            .with_context(|| format!("{key} = {}: cannot read", issuer.jwks))?;
        let jwks: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{key} = {}: not JSON", issuer.jwks))?;
        let keys = jwks["keys"].as_array().filter(|k| !k.is_empty());
        if keys.is_none() {
            bail!(
                "{key} = {}: not a JWKS (no \"keys\" array with a key)",
                issuer.jwks
            );
        }
    }
    for (i, file) in config.open_banking.dcr.jwks.extra_ca.iter().enumerate() {
        crate::tls::load_certificates(&format!("open_banking.dcr.jwks.extra_ca[{i}]"), file)?;
    }
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

async fn clients(config_path: &Path, cmd: ClientsCommand) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = crate::server::open_store(&config).await?;
    match cmd {
        ClientsCommand::List { json } => {
            let clients = store.list_clients().await?;
            if json {
                let rows: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "client_id": c.client_id,
                            "software_id": c.software_id,
                            "org_id": c.org_id,
                            "token_endpoint_auth_method": c.token_endpoint_auth_method,
                            "enabled": c.enabled,
                            "created_at": c.created_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<36}  {:<22}  {:<18}  {:<16}  created_at",
                    "client_id", "software_id", "org_id", "auth_method"
                );
                for c in &clients {
                    println!(
                        "{:<36}  {:<22}  {:<18}  {:<16}  {}",
                        c.client_id,
                        c.software_id,
                        c.org_id,
                        c.token_endpoint_auth_method,
                        c.created_at
                    );
                }
                eprintln!("{} client(s)", clients.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientsCommand::Show { client_id } => match store.get_client(&client_id).await? {
            Some(c) => {
                let metadata: serde_json::Value =
                    serde_json::from_str(&c.metadata).unwrap_or(serde_json::Value::Null);
                println!("{}", serde_json::to_string_pretty(&metadata)?);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no client {client_id}");
                Ok(ExitCode::FAILURE)
            }
        },
        ClientsCommand::Delete { client_id } => {
            let audit = AuditRecord {
                at: crate::clock::now(),
                action: "client.delete".into(),
                outcome: "success".into(),
                client_id: Some(client_id.clone()),
                detail: Some(r#"{"by":"operator cli"}"#.into()),
                ..AuditRecord::default()
            };
            if store.delete_client(&client_id, &audit).await? {
                println!("deleted {client_id} and its tokens");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no client {client_id}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
