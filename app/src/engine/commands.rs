//! The network commands of `peerphone` on top of the engine (being written: each runner
//! reports that it is not available yet rather than pretending to work).

use crate::cli::{CliError, ContactsCommand, Context, EchoMode};
use proto::UserName;
use std::path::PathBuf;

/// `call`'s options.
#[derive(Debug, Clone, Default)]
pub struct CallPlan {
    pub play: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub seconds: Option<u64>,
    pub hold_at: Option<u64>,
    pub resume_at: Option<u64>,
}

fn unavailable(what: &str) -> CliError {
    CliError::Other(format!("`{what}` is not available in this build yet"))
}

pub async fn search(_ctx: &Context, _query: String) -> Result<(), CliError> {
    Err(unavailable("search"))
}

pub async fn contacts(_ctx: &Context, _action: ContactsCommand) -> Result<(), CliError> {
    Err(unavailable("contacts"))
}

pub async fn chat(_ctx: &Context, _user: UserName, _text: String) -> Result<(), CliError> {
    Err(unavailable("chat"))
}

pub async fn online(
    _ctx: &Context,
    _auto_answer: bool,
    _play: Option<PathBuf>,
    _record: Option<PathBuf>,
) -> Result<(), CliError> {
    Err(unavailable("online"))
}

pub async fn call(_ctx: &Context, _user: UserName, _plan: CallPlan) -> Result<(), CliError> {
    Err(unavailable("call"))
}

pub async fn turn_credentials(_ctx: &Context) -> Result<(), CliError> {
    Err(unavailable("turn-credentials"))
}

pub async fn echo_service(_ctx: &Context, _mode: EchoMode) -> Result<(), CliError> {
    Err(unavailable("echo-service"))
}
