//! `peerphone` with no subcommand: picks the network, starts the glue task on a tokio
//! runtime, opens the window on the main thread, and shuts everything down when the window
//! closes or a stop signal arrives.
//!
//! Which network: the login server given by flags, else the one the profile remembers,
//! else the embedded local network ([`crate::local::LocalNetwork`], kept under the
//! profile's `local-network/` directory) started in this process. A profile that
//! remembers a loopback login server is taken to mean the embedded network, unless the
//! embedded network turns out to have another authority key (someone else's `peerphone
//! local` holds the port) — then the remembered one is used.

use super::backend::NetworkBackend;
use super::link::{self, Repaint};
use super::model::{NetworkInfo, UiModel};
use super::notify::{DesktopNotifier, NoNotifications, Notifier};
use super::sound::{DevicePlayer, Silent, SoundPlayer};
use super::{DesktopApp, resources};
use crate::cli::{CliError, Options};
use crate::local::{EchoStatus, LocalNetwork};
use crate::login_client::LoginTarget;
use crate::profile::Profile;
use std::time::Duration;

/// Supernodes the embedded network runs.
const EMBEDDED_SUPERNODES: u16 = 1;
/// How long shutting down may take (CONTRACT: within 5 s of a stop signal).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(4500);

/// Opens the desktop app; returns when its window has closed.
pub fn run(options: &Options) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("peerphone-engine")
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the runtime: {e}")))?;
    let profile = Profile::open(&options.profile_dir)?;
    let (target, network, local) = runtime.block_on(choose_network(&profile, options))?;
    // Remember the choice, as every network command does.
    crate::login_client::resolve_target(&profile, Some(target.addr), Some(target.authority))?;

    let repaint = Repaint::new();
    let (ui_link, glue_end) = link::channel(repaint.clone());
    let backend = NetworkBackend::new(profile.clone(), target, network.clone());
    let glue = runtime.spawn(link::run_glue(backend, glue_end));
    {
        let repaint = repaint.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                repaint.close_window();
            }
        });
    }
    #[cfg(unix)]
    {
        let repaint = repaint.clone();
        runtime.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                term.recv().await;
                repaint.close_window();
            }
        });
    }

    let mut model = UiModel::new();
    model.network = Some(network);
    if let Ok(settings) = profile.settings()
        && let Some(user) = settings.user
    {
        model.login.user = user.to_string();
        model.login.mode = super::model::LoginMode::Login;
        // The glue tries the remembered credential first.
        model.login.busy = true;
    }
    let sounds: Box<dyn SoundPlayer> = match DevicePlayer::start() {
        Ok(player) => Box::new(player),
        Err(_) => Box::new(Silent),
    };
    let notifier: Box<dyn Notifier> = match DesktopNotifier::start() {
        Ok(notifier) => Box::new(notifier),
        Err(_) => Box::new(NoNotifications),
    };
    let app = DesktopApp::new(model, ui_link, sounds).with_notifier(notifier);
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Peerphone")
            .with_app_id("peerphone")
            .with_inner_size([980.0, 660.0])
            .with_min_inner_size([640.0, 420.0])
            .with_icon(resources::window_icon()),
        ..Default::default()
    };
    let shown = eframe::run_native(
        "Peerphone",
        native,
        Box::new(move |cc| {
            repaint.set(cc.egui_ctx.clone());
            Ok(Box::new(app))
        }),
    );
    // The window (and with it the UI's end of the link) is gone: the glue logs off.
    runtime.block_on(async {
        let _ = tokio::time::timeout(SHUTDOWN_BUDGET / 2, glue).await;
        if let Some(local) = local {
            let _ = tokio::time::timeout(SHUTDOWN_BUDGET / 2, local.shutdown()).await;
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    shown.map_err(|e| CliError::Other(format!("cannot open the window: {e}")))
}

async fn choose_network(
    profile: &Profile,
    options: &Options,
) -> Result<(LoginTarget, NetworkInfo, Option<LocalNetwork>), CliError> {
    let settings = profile.settings()?;
    let remembered = match (
        options.login_server.or(settings.login_server),
        options.authority_key.or(settings.authority_key),
    ) {
        (Some(addr), Some(authority)) => Some(LoginTarget { addr, authority }),
        _ => None,
    };
    let flags_given = options.login_server.is_some() && options.authority_key.is_some();
    if let Some(target) = remembered
        && (flags_given || !target.addr.ip().is_loopback())
    {
        return Ok((target, remote_info(target), None));
    }
    let dir = profile.dir().join("local-network");
    let local = LocalNetwork::start(&dir, EMBEDDED_SUPERNODES)
        .await
        .map_err(|e| CliError::Other(format!("cannot start the local network: {e}")))?;
    if let Some(target) = remembered
        && target.authority != local.authority_key()
    {
        local.shutdown().await;
        return Ok((target, remote_info(target), None));
    }
    let target = local.target();
    let echo_user = match local.echo_status() {
        Some(EchoStatus::Running) => crate::local::ECHO_USER.parse().ok(),
        _ => None,
    };
    let info = NetworkInfo {
        login_server: target.addr.to_string(),
        embedded: true,
        echo_user,
    };
    Ok((target, info, Some(local)))
}

fn remote_info(target: LoginTarget) -> NetworkInfo {
    NetworkInfo {
        login_server: target.addr.to_string(),
        embedded: false,
        echo_user: None,
    }
}
