//! `peerphone netcheck` (being written).

use crate::cli::{CliError, Context};

pub async fn run(_ctx: &Context) -> Result<(), CliError> {
    Err(CliError::Other(
        "`netcheck` is not available in this build yet".into(),
    ))
}
