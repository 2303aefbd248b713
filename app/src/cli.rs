//! The `peerphone` command line: global flags, the config file, and the commands.
//!
//! Results go to stdout (one JSON object per line with `--json`), logs to stderr. Exit
//! codes: 0 success, 2 usage error (clap), 1 any other error with a one-line cause.

use crate::login_client::{self, FlowError};
use crate::profile::{self, Profile};
use clap::{Parser, Subcommand, ValueEnum};
use proto::login::Password;
use proto::{DisplayName, PublicKey, UserName};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Environment variable that supplies the password (else a no-echo prompt).
pub const PASSWORD_ENV: &str = "PEERPHONE_PASSWORD";

/// Peerphone: peer-to-peer calls and chat.
#[derive(Debug, Parser)]
#[command(name = "peerphone", version, about)]
pub struct Cli {
    /// This user's keys, credential, host cache, contacts and history.
    #[arg(long, global = true, value_name = "DIR")]
    pub profile: Option<PathBuf>,
    /// The login server (IP:PORT); remembered in the profile.
    #[arg(long, global = true, value_name = "ADDR")]
    pub login_server: Option<SocketAddr>,
    /// The login server's authority public key (base64url); remembered in the profile.
    // base64url keys may start with '-' (one in 64): still the value, not a flag.
    #[arg(long, global = true, value_name = "KEY", allow_hyphen_values = true)]
    pub authority_key: Option<PublicKey>,
    /// Print results and events as one JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
    /// TOML file with a key for every flag (flags win).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the account, remember the user in the profile and log in.
    Register {
        user: UserName,
        /// Shown to others; defaults to the user name.
        #[arg(long)]
        display_name: Option<DisplayName>,
    },
    /// Authenticate as USER (default: the profile's user); keep the credential.
    Login { user: Option<UserName> },
    /// Find users: an exact user name or a display-name prefix, with presence.
    Search { query: String },
    /// The buddy list.
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Send a message; exits once the network accepted it (delivered, or stored for later).
    Chat { user: UserName, text: String },
    /// Stay online, printing events until stopped.
    Online {
        /// Answer incoming calls by themselves.
        #[arg(long)]
        auto_answer: bool,
        /// A WAV file that stands in for the microphone in answered calls.
        #[arg(long, value_name = "WAV")]
        play: Option<PathBuf>,
        /// Write what the speaker would play (48 kHz mono 16-bit WAV).
        #[arg(long, value_name = "WAV")]
        record: Option<PathBuf>,
    },
    /// Place a call and hang up after --seconds.
    Call {
        user: UserName,
        /// A WAV file that stands in for the microphone (then silence).
        #[arg(long, value_name = "WAV")]
        play: Option<PathBuf>,
        /// Write what the speaker would play (48 kHz mono 16-bit WAV).
        #[arg(long, value_name = "WAV")]
        record: Option<PathBuf>,
        /// Hang up this many seconds after the call connects (default: stay until stopped).
        #[arg(long, value_name = "N")]
        seconds: Option<u64>,
        /// Put the call on hold this many seconds after it connects.
        #[arg(long, value_name = "S")]
        hold_at: Option<u64>,
        /// Resume a held call this many seconds after it connects.
        #[arg(long, value_name = "S")]
        resume_at: Option<u64>,
        /// Also invite USER once the call connects: a conference of up to five (repeatable).
        #[arg(long = "add", value_name = "USER")]
        add: Vec<UserName>,
    },
    /// NAT discovery report.
    Netcheck,
    /// Short-lived TURN credentials from the home supernode, for any standard TURN client.
    TurnCredentials,
    /// Stay online as an echo test account.
    EchoService {
        #[arg(long, value_enum, default_value = "live")]
        mode: EchoMode,
    },
    /// Run a login server, N supernodes and an `echo` account on loopback in one process.
    Local {
        #[arg(long, default_value_t = 1, value_name = "N")]
        supernodes: u16,
    },
    /// Your account at the login server.
    #[command(subcommand)]
    Account(AccountCommand),
}

/// `account …`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Change the name others see (the registration rules apply).
    DisplayName { display_name: DisplayName },
}

/// `contacts …`.
#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// The buddy list with presence.
    List,
    /// Send an authorization request.
    Add { user: UserName },
    /// Accept a request.
    Accept { user: UserName },
    /// Decline a request.
    Decline { user: UserName },
    /// Remove a contact.
    Remove { user: UserName },
    /// Block a user: no requests, calls or messages from them.
    Block { user: UserName },
}

/// `echo-service --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EchoMode {
    /// Send back what it hears.
    Live,
    /// Play a tone, record 8 s, play it back.
    Record,
}

/// What every command runner gets.
#[derive(Debug)]
pub struct Context {
    pub out: Output,
    pub profile: Profile,
    pub options: Options,
}

/// The configuration file: a key for every global flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub profile: Option<PathBuf>,
    pub login_server: Option<SocketAddr>,
    pub authority_key: Option<String>,
    pub json: Option<bool>,
    pub log_format: Option<LogFormat>,
}

/// The global options after merging flags over the config file.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile_dir: PathBuf,
    pub login_server: Option<SocketAddr>,
    pub authority_key: Option<PublicKey>,
    pub json: bool,
    pub log_format: LogFormat,
}

/// A command failed; the message is the one-line cause.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Flow(#[from] FlowError),
    #[error(transparent)]
    Profile(#[from] profile::ProfileError),
    #[error("config file {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{0}")]
    Other(String),
}

fn load_config(path: &Path) -> Result<FileConfig, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Config {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| CliError::Config {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

impl Options {
    pub fn resolve(cli: &Cli) -> Result<Self, CliError> {
        let file = match &cli.config {
            Some(path) => load_config(path)?,
            None => FileConfig::default(),
        };
        let authority_key = match (&cli.authority_key, &file.authority_key) {
            (Some(k), _) => Some(*k),
            (None, Some(text)) => Some(text.parse().map_err(|e| CliError::Config {
                path: cli.config.clone().unwrap_or_default(),
                reason: format!("authority-key: {e}"),
            })?),
            (None, None) => None,
        };
        let profile_dir = match cli.profile.clone().or(file.profile) {
            Some(dir) => dir,
            None => profile::default_dir()?,
        };
        Ok(Self {
            profile_dir,
            login_server: cli.login_server.or(file.login_server),
            authority_key,
            json: cli.json || file.json.unwrap_or(false),
            log_format: cli
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
        })
    }
}

/// Prints results: JSON lines or text.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints one event: `json` in JSON mode, `text` otherwise.
    pub fn event(&self, json: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{json}");
        } else {
            println!("{}", text());
        }
    }
}

/// The password: `PEERPHONE_PASSWORD`, else a no-echo prompt (twice when `confirm`).
pub fn read_password(confirm: bool) -> Result<Password, FlowError> {
    let text = match std::env::var(PASSWORD_ENV) {
        Ok(text) => text,
        Err(_) => {
            let first = rpassword::prompt_password("Password: ")
                .map_err(|e| FlowError::Password(format!("cannot read it: {e}")))?;
            if confirm {
                let second = rpassword::prompt_password("Repeat password: ")
                    .map_err(|e| FlowError::Password(format!("cannot read it: {e}")))?;
                if first != second {
                    return Err(FlowError::Password("the two entries differ".into()));
                }
            }
            first
        }
    };
    Password::new(text).map_err(|e| FlowError::Password(e.to_string()))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs one command.
pub async fn run(command: Command, options: &Options) -> Result<(), CliError> {
    let out = Output { json: options.json };
    let profile = Profile::open(&options.profile_dir)?;
    let ctx = Context {
        out,
        profile: profile.clone(),
        options: options.clone(),
    };
    match command {
        Command::Search { query } => return crate::engine::commands::search(&ctx, query).await,
        Command::Contacts(action) => return crate::engine::commands::contacts(&ctx, action).await,
        Command::Chat { user, text } => {
            return crate::engine::commands::chat(&ctx, user, text).await;
        }
        Command::Online {
            auto_answer,
            play,
            record,
        } => {
            return crate::engine::commands::online(&ctx, auto_answer, play, record).await;
        }
        Command::Call {
            user,
            play,
            record,
            seconds,
            hold_at,
            resume_at,
            add,
        } => {
            if add.len() > crate::engine::commands::MAX_ADDED {
                // A usage error: clap's message and exit code 2.
                <Cli as clap::CommandFactory>::command()
                    .error(
                        clap::error::ErrorKind::TooManyValues,
                        format!(
                            "--add: a conference holds at most five people (the call plus {} more)",
                            crate::engine::commands::MAX_ADDED
                        ),
                    )
                    .exit();
            }
            let plan = crate::engine::commands::CallPlan {
                play,
                record,
                seconds,
                hold_at,
                resume_at,
                add,
            };
            return crate::engine::commands::call(&ctx, user, plan).await;
        }
        Command::Netcheck => return crate::netcheck::run(&ctx).await,
        Command::TurnCredentials => return crate::engine::commands::turn_credentials(&ctx).await,
        Command::EchoService { mode } => {
            return crate::engine::commands::echo_service(&ctx, mode).await;
        }
        Command::Local { supernodes } => return crate::local::run(&ctx, supernodes).await,
        Command::Register { .. } | Command::Login { .. } | Command::Account(_) => {}
    }
    let (target, settings) =
        login_client::resolve_target(&profile, options.login_server, options.authority_key)?;
    match command {
        Command::Register { user, display_name } => {
            let display_name = match display_name {
                Some(d) => d,
                None => {
                    DisplayName::new(user.as_str()).map_err(|e| CliError::Other(e.to_string()))?
                }
            };
            let password = read_password(true)?;
            password
                .check_new()
                .map_err(|e| FlowError::Password(e.to_string()))?;
            login_client::register(&profile, &target, &user, &display_name, &password).await?;
            out.event(
                serde_json::json!({"event": "registered", "user": user.as_str()}),
                || format!("registered {user}"),
            );
            logged_in(&out, &user);
        }
        Command::Login { user } => {
            let user = user.or(settings.user).ok_or(FlowError::NoUser)?;
            let password = read_password(false)?;
            login_client::login(&profile, &target, &user, &password).await?;
            logged_in(&out, &user);
        }
        Command::Account(AccountCommand::DisplayName { display_name }) => {
            let (user, credential) =
                login_client::ensure_credential(&profile, &target, || read_password(false)).await?;
            login_client::set_display_name(&profile, &target, &credential, &display_name).await?;
            out.event(
                serde_json::json!({
                    "event": "display_name_changed",
                    "user": user.as_str(),
                    "display_name": display_name.as_str(),
                }),
                || format!("display name of {user} is now {display_name}"),
            );
        }
        _ => {}
    }
    Ok(())
}

fn logged_in(out: &Output, user: &UserName) {
    // No supernode is chosen until clients home on supernodes.
    out.event(
        serde_json::json!({"event": "logged_in", "user": user.as_str(), "supernode": null}),
        || format!("logged in as {user}"),
    );
}

/// The whole program: parse, run, report. Usage errors exit 2 (clap), others 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let fail = |e: &dyn std::fmt::Display| {
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "error", "message": e.to_string()})
            );
        }
        eprintln!("peerphone: error: {e}");
        ExitCode::FAILURE
    };
    let options = match Options::resolve(&cli) {
        Ok(options) => options,
        Err(e) => return fail(&e),
    };
    init_logging(options.log_format);
    let Some(command) = cli.command else {
        return match crate::ui::run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(run(command, &options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::keys::SecretKey;

    /// One base64url key in 64 starts with '-'; it must still parse as the flag's value.
    #[test]
    fn an_authority_key_starting_with_a_hyphen_is_a_value() {
        let key = (0u8..=255)
            .map(|seed| SecretKey::from_bytes(&[seed; 32]).public())
            .find(|key| key.to_string().starts_with('-'))
            .expect("one of 256 keys starts with '-'");
        let text = key.to_string();
        let cli = Cli::try_parse_from(["peerphone", "--authority-key", &text, "register", "alice"])
            .expect("parses");
        assert_eq!(cli.authority_key, Some(key));
        let cli = Cli::try_parse_from(["peerphone", "register", "alice", "--authority-key", &text])
            .expect("parses after the subcommand too");
        assert_eq!(cli.authority_key, Some(key));
    }
}
