//! `peerphone local`: the embedded local network (being written).

use crate::cli::{CliError, Context};

pub async fn run(_ctx: &Context, _supernodes: u16) -> Result<(), CliError> {
    Err(CliError::Other(
        "`local` is not available in this build yet".into(),
    ))
}
