//! The network commands of `peerphone` on top of the engine: `search`, `contacts`, `chat`,
//! `online`, `call`, `turn-credentials`, `echo-service`.
//!
//! Each starts an [`Engine`] with the profile's credential (logging in first when the
//! profile holds no valid one), waits until it is homed where the command needs a
//! supernode, does its work, and logs off. Results and events go to stdout as CONTRACT.md
//! says (one JSON object per line with `--json`).

use super::{CallOptions, ContactAction, Engine, EngineConfig, EngineError, EngineHandle};
use crate::cli::{CliError, ContactsCommand, Context, EchoMode, Output, read_password};
use crate::events::Event;
use crate::login_client;
use proto::UserName;
use proto::login::ContactState;
use proto::supernode::PresenceStatus;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a command waits to be homed at a supernode.
const HOMING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `chat` waits for the network to accept its message.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `chat` waits for the receipt of a message handed to an online device.
const RECEIPT_GRACE: Duration = Duration::from_secs(3);
/// `call --add` invites at most this many: with the caller and the callee, five people.
pub const MAX_ADDED: usize = proto::peer::MAX_CONFERENCE - 2;

/// `call`'s options.
#[derive(Debug, Clone, Default)]
pub struct CallPlan {
    pub play: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub seconds: Option<u64>,
    pub hold_at: Option<u64>,
    pub resume_at: Option<u64>,
    /// Participants invited once the call connects (a conference of up to five).
    pub add: Vec<UserName>,
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        CliError::Other(e.to_string())
    }
}

fn print_event(out: &Output, event: &Event) {
    if out.json {
        println!("{}", event.to_json_line());
    } else {
        println!("{}", event.to_text());
    }
}

/// A running engine and the events it has produced so far.
struct Session {
    handle: EngineHandle,
    events: mpsc::Receiver<Event>,
    /// Events seen while waiting for something else, in order.
    backlog: std::collections::VecDeque<Event>,
}

impl Session {
    async fn start(
        ctx: &Context,
        presence: PresenceStatus,
        mailbox: bool,
        calls: CallOptions,
    ) -> Result<Self, CliError> {
        Self::start_with(ctx, presence, mailbox, calls, true).await
    }

    async fn start_with(
        ctx: &Context,
        presence: PresenceStatus,
        mailbox: bool,
        calls: CallOptions,
        home: bool,
    ) -> Result<Self, CliError> {
        let (target, _settings) = login_client::resolve_target(
            &ctx.profile,
            ctx.options.login_server,
            ctx.options.authority_key,
        )?;
        let (_user, credential) =
            login_client::ensure_credential(&ctx.profile, &target, || read_password(false)).await?;
        let mut config = EngineConfig::new(ctx.profile.clone(), target, credential);
        config.presence = presence;
        config.calls = calls;
        config.home = home;
        if !mailbox {
            config.mailbox_poll = None;
        }
        let (handle, events) = Engine::start(config).await?;
        Ok(Self {
            handle,
            events,
            backlog: Default::default(),
        })
    }

    /// The next event (backlog first); `None` when the engine stopped.
    async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.backlog.pop_front() {
            return Some(event);
        }
        self.events.recv().await
    }

    /// Waits for the first `logged_in` (homed at a supernode), keeping other events.
    async fn homed(&mut self) -> Result<Event, CliError> {
        let wait = async {
            loop {
                match self.events.recv().await {
                    Some(event @ Event::LoggedIn { .. }) => return Ok(event),
                    Some(other) => self.backlog.push_back(other),
                    None => return Err(CliError::Other("the engine stopped".into())),
                }
            }
        };
        match tokio::time::timeout(HOMING_TIMEOUT, wait).await {
            Ok(result) => result,
            Err(_) => {
                let cause = self.backlog.iter().rev().find_map(|e| match e {
                    Event::Error { message } => Some(message.clone()),
                    _ => None,
                });
                Err(CliError::Other(match cause {
                    Some(cause) => format!("cannot reach any supernode: {cause}"),
                    None => format!(
                        "cannot reach any supernode within {} s",
                        HOMING_TIMEOUT.as_secs()
                    ),
                }))
            }
        }
    }

    /// Prints `chat_delivered` for `id` if the receipt comes within a moment of the
    /// message reaching the recipient's device.
    async fn delivered_soon(&mut self, out: &Output, id: &str) {
        let wait = async {
            while let Some(event) = self.next().await {
                if let Event::ChatDelivered { id: delivered, .. } = &event
                    && delivered == id
                {
                    print_event(out, &event);
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(RECEIPT_GRACE, wait).await;
    }

    async fn stop(self) {
        self.handle.shutdown().await;
    }
}

pub async fn search(ctx: &Context, query: String) -> Result<(), CliError> {
    let mut session = Session::start(
        ctx,
        PresenceStatus::Invisible,
        false,
        CallOptions::default(),
    )
    .await?;
    let result = async {
        session.homed().await?;
        Ok::<_, CliError>(session.handle.search(&query).await?)
    }
    .await;
    session.stop().await;
    for hit in result? {
        ctx.out
            .event(serde_json::to_value(&hit).unwrap_or_default(), || {
                format!(
                    "{} ({}) {}",
                    hit.user,
                    hit.display_name,
                    serde_json::to_value(hit.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            });
    }
    Ok(())
}

fn state_name(state: ContactState) -> &'static str {
    match state {
        ContactState::Accepted => "accepted",
        ContactState::RequestSent => "request_sent",
        ContactState::RequestReceived => "request_received",
        ContactState::Blocked => "blocked",
    }
}

pub async fn contacts(ctx: &Context, action: ContactsCommand) -> Result<(), CliError> {
    let (action, only): (ContactAction, Option<UserName>) = match action {
        ContactsCommand::List => (ContactAction::List, None),
        ContactsCommand::Add { user } => (ContactAction::Add(user.clone()), Some(user)),
        ContactsCommand::Accept { user } => (ContactAction::Accept(user.clone()), Some(user)),
        ContactsCommand::Decline { user } => (ContactAction::Decline(user.clone()), Some(user)),
        ContactsCommand::Remove { user } => (ContactAction::Remove(user.clone()), Some(user)),
        ContactsCommand::Block { user } => (ContactAction::Block(user.clone()), Some(user)),
    };
    let verb = match &action {
        ContactAction::List => "",
        ContactAction::Add(_) => "asked",
        ContactAction::Accept(_) => "accepted",
        ContactAction::Decline(_) => "declined",
        ContactAction::Remove(_) => "removed",
        ContactAction::Block(_) => "blocked",
    };
    let session = Session::start_with(
        ctx,
        PresenceStatus::Invisible,
        false,
        CallOptions::default(),
        false,
    )
    .await?;
    let result = session.handle.contacts(action).await;
    session.stop().await;
    let list = result?;
    match only {
        None => {
            for contact in &list {
                ctx.out.event(
                    serde_json::json!({
                        "user": contact.user.as_str(),
                        "display_name": contact.display_name.as_str(),
                        "state": state_name(contact.state),
                    }),
                    || {
                        format!(
                            "{} ({}) {}",
                            contact.user,
                            contact.display_name,
                            state_name(contact.state).replace('_', " ")
                        )
                    },
                );
            }
        }
        Some(user) => {
            let state = list.iter().find(|c| c.user == user).map(|c| c.state);
            ctx.out.event(
                serde_json::json!({
                    "user": user.as_str(),
                    "state": state.map(state_name),
                }),
                || format!("{verb} {user}"),
            );
        }
    }
    Ok(())
}

pub async fn chat(ctx: &Context, user: UserName, text: String) -> Result<(), CliError> {
    let mut session = Session::start(
        ctx,
        PresenceStatus::Invisible,
        false,
        CallOptions::default(),
    )
    .await?;
    let result = async {
        session.homed().await?;
        let id = session.handle.send_chat(user, text).await?.to_string();
        let wait = async {
            while let Some(event) = session.next().await {
                match &event {
                    Event::ChatAccepted {
                        id: accepted,
                        stored,
                        ..
                    } if *accepted == id => {
                        print_event(&ctx.out, &event);
                        if !*stored {
                            session.delivered_soon(&ctx.out, &id).await;
                        }
                        return Ok(());
                    }
                    Event::ChatDelivered { id: delivered, .. } if *delivered == id => {
                        print_event(&ctx.out, &event);
                    }
                    _ => {}
                }
            }
            Err(CliError::Other("the engine stopped".into()))
        };
        tokio::time::timeout(ACCEPT_TIMEOUT, wait)
            .await
            .map_err(|_| {
                CliError::Other(format!(
                    "the network did not accept the message within {} s",
                    ACCEPT_TIMEOUT.as_secs()
                ))
            })?
    }
    .await;
    session.stop().await;
    result
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Prints events until a stop signal.
async fn stay_online(ctx: &Context, calls: CallOptions) -> Result<(), CliError> {
    let mut session = Session::start(ctx, PresenceStatus::Online, true, calls).await?;
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            event = session.next() => match event {
                Some(event) => print_event(&ctx.out, &event),
                None => break,
            },
        }
    }
    session.stop().await;
    Ok(())
}

pub async fn online(
    ctx: &Context,
    auto_answer: bool,
    play: Option<PathBuf>,
    record: Option<PathBuf>,
) -> Result<(), CliError> {
    stay_online(
        ctx,
        CallOptions {
            auto_answer,
            play,
            record,
            echo: None,
            relay_only: false,
        },
    )
    .await
}

pub async fn echo_service(ctx: &Context, mode: EchoMode) -> Result<(), CliError> {
    stay_online(
        ctx,
        CallOptions {
            auto_answer: true,
            play: None,
            record: None,
            echo: Some(mode),
            relay_only: false,
        },
    )
    .await
}

pub async fn call(ctx: &Context, user: UserName, plan: CallPlan) -> Result<(), CliError> {
    let options = CallOptions {
        auto_answer: false,
        play: plan.play.clone(),
        record: plan.record.clone(),
        echo: None,
        relay_only: false,
    };
    let mut session = Session::start(ctx, PresenceStatus::Online, false, options).await?;
    let result = run_call(ctx, &mut session, user, &plan).await;
    session.stop().await;
    result
}

async fn run_call(
    ctx: &Context,
    session: &mut Session,
    user: UserName,
    plan: &CallPlan,
) -> Result<(), CliError> {
    let logged_in = session.homed().await?;
    print_event(&ctx.out, &logged_in);
    let call_id = session.handle.dial(user).await?;
    let id = call_id.to_string();
    let stop = stop_signal();
    tokio::pin!(stop);
    // Actions after connecting, as (seconds after connect, action).
    let mut plan_steps: Vec<(u64, &'static str)> = Vec::new();
    if let Some(s) = plan.hold_at {
        plan_steps.push((s, "hold"));
    }
    if let Some(s) = plan.resume_at {
        plan_steps.push((s, "resume"));
    }
    if let Some(s) = plan.seconds {
        plan_steps.push((s, "hangup"));
    }
    plan_steps.sort_by_key(|(s, _)| *s);
    let mut connected_at: Option<tokio::time::Instant> = None;
    let mut hung_up = false;
    // Failed invitations into the conference, as they come back.
    let (add_failed_tx, mut add_failed) = mpsc::channel::<String>(MAX_ADDED);
    loop {
        let next_step =
            connected_at.and_then(|t| plan_steps.first().map(|(s, _)| t + Duration::from_secs(*s)));
        let step_timer = async {
            match next_step {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop, if !hung_up => {
                hung_up = true;
                let _ = session.handle.hangup(call_id).await;
            }
            () = step_timer => {
                let (_, action) = plan_steps.remove(0);
                let result = match action {
                    "hold" => session.handle.hold(call_id).await,
                    "resume" => session.handle.resume(call_id).await,
                    _ => {
                        hung_up = true;
                        session.handle.hangup(call_id).await
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%error, action, "call step failed");
                }
            }
            Some(message) = add_failed.recv() => {
                print_event(&ctx.out, &Event::Error { message });
            }
            event = session.next() => {
                let Some(event) = event else {
                    return Err(CliError::Other("the engine stopped".into()));
                };
                print_event(&ctx.out, &event);
                match &event {
                    // The first leg connects the call; the participants' legs connect later.
                    Event::CallConnected { call_id: c, .. }
                        if *c == id && connected_at.is_none() =>
                    {
                        connected_at = Some(tokio::time::Instant::now());
                        for user in &plan.add {
                            tokio::spawn(invite(
                                session.handle.clone(),
                                call_id,
                                user.clone(),
                                add_failed_tx.clone(),
                            ));
                        }
                    }
                    Event::CallEnded { call_id: c, reason, detail, .. } if *c == id => {
                        use crate::events::EndReason;
                        if connected_at.is_some() && *reason == EndReason::Hangup {
                            return Ok(());
                        }
                        if hung_up && *reason == EndReason::Hangup {
                            return Ok(());
                        }
                        let why = serde_json::to_value(reason)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        return Err(CliError::Other(match detail {
                            Some(detail) => format!("call {why}: {detail}"),
                            None => format!("call {why}"),
                        }));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Adds `user` to the call; a failure comes back as a message for the user.
async fn invite(
    handle: EngineHandle,
    call_id: proto::CallId,
    user: UserName,
    failed: mpsc::Sender<String>,
) {
    if let Err(error) = handle.add_participant(call_id, user.clone()).await {
        let _ = failed.send(format!("cannot add {user}: {error}")).await;
    }
}

pub async fn turn_credentials(ctx: &Context) -> Result<(), CliError> {
    let mut session = Session::start(
        ctx,
        PresenceStatus::Invisible,
        false,
        CallOptions::default(),
    )
    .await?;
    let result = async {
        session.homed().await?;
        Ok::<_, CliError>(session.handle.turn_credentials().await?)
    }
    .await;
    session.stop().await;
    let credentials = result?;
    // One JSON object whatever the output mode: it is meant for machines.
    println!(
        "{}",
        serde_json::to_string(&credentials).map_err(|e| CliError::Other(e.to_string()))?
    );
    Ok(())
}
