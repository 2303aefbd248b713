//! The boundary between the UI thread and the engine.
//!
//! The UI holds a [`UiLink`]: it sends [`UiAction`]s over a bounded channel without ever
//! blocking ([`UiLink::send`] fails when the engine is behind) and drains [`UiEvent`]s with
//! [`UiLink::try_recv`]. On the other side a glue task ([`run_glue`]) hands each action to
//! a [`Backend`] (the real engine, or a fake in tests); the backend answers through an
//! [`EventSink`], which also wakes the UI ([`Repaint`]) so events show without input.
//! [`forward_events`] pipes the engine's own event stream into the same sink.

use super::model::{UiAction, UiEvent};
use crate::events::Event;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;

/// Actions queued towards the engine before the UI reports it busy.
pub const ACTION_QUEUE: usize = 64;
/// Events queued towards the UI.
pub const EVENT_QUEUE: usize = 1024;

/// Wakes the UI thread from any thread. Before the window exists it does nothing.
#[derive(Debug, Clone, Default)]
pub struct Repaint(Arc<OnceLock<egui::Context>>);

impl Repaint {
    pub fn new() -> Self {
        Self::default()
    }

    /// Called once the egui context exists.
    pub fn set(&self, ctx: egui::Context) {
        let _ = self.0.set(ctx);
    }

    pub fn request(&self) {
        if let Some(ctx) = self.0.get() {
            ctx.request_repaint();
        }
    }

    /// Asks the window to close (a stop signal arrived).
    pub fn close_window(&self) {
        if let Some(ctx) = self.0.get() {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            ctx.request_repaint();
        }
    }
}

/// Where the glue side sends events for the UI.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<UiEvent>,
    repaint: Repaint,
}

impl EventSink {
    /// Queues one event and wakes the UI. Waits while the UI's queue is full; gives up
    /// silently once the UI has closed.
    pub async fn send(&self, event: UiEvent) {
        let _ = self.tx.send(event).await;
        self.repaint.request();
    }

    /// Queues a CONTRACT event.
    pub async fn engine(&self, event: Event) {
        self.send(UiEvent::Engine(event)).await;
    }

    /// Reports a failed command as an error toast.
    pub async fn error(&self, message: impl Into<String>) {
        self.engine(Event::Error {
            message: message.into(),
        })
        .await;
    }
}

/// The UI's end of the link.
#[derive(Debug)]
pub struct UiLink {
    actions: mpsc::Sender<UiAction>,
    events: mpsc::Receiver<UiEvent>,
}

/// The engine is not keeping up (or has stopped); the action was not sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("the engine is busy; try again")]
    Busy(UiAction),
    #[error("the engine has stopped")]
    Closed(UiAction),
}

impl UiLink {
    /// Sends an action without blocking.
    pub fn send(&self, action: UiAction) -> Result<(), SendError> {
        self.actions.try_send(action).map_err(|e| match e {
            mpsc::error::TrySendError::Full(a) => SendError::Busy(a),
            mpsc::error::TrySendError::Closed(a) => SendError::Closed(a),
        })
    }

    /// The next event, if one is queued.
    pub fn try_recv(&mut self) -> Option<UiEvent> {
        self.events.try_recv().ok()
    }
}

/// The glue's end of the link.
#[derive(Debug)]
pub struct GlueEnd {
    pub actions: mpsc::Receiver<UiAction>,
    pub sink: EventSink,
}

/// A connected pair of ends.
pub fn channel(repaint: Repaint) -> (UiLink, GlueEnd) {
    let (action_tx, action_rx) = mpsc::channel(ACTION_QUEUE);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    (
        UiLink {
            actions: action_tx,
            events: event_rx,
        },
        GlueEnd {
            actions: action_rx,
            sink: EventSink {
                tx: event_tx,
                repaint,
            },
        },
    )
}

/// Carries out the UI's commands.
pub trait Backend: Send + 'static {
    /// Performs one action; replies and the events it causes go to `sink`. Errors are
    /// reported through the sink ([`EventSink::error`], [`UiEvent::LoginFailed`], …),
    /// never by panicking.
    fn perform(&mut self, action: UiAction, sink: &EventSink) -> impl Future<Output = ()> + Send;

    /// Runs once before the first action (e.g. resumes the profile's session).
    fn start(&mut self, sink: &EventSink) -> impl Future<Output = ()> + Send {
        let _ = sink;
        async {}
    }

    /// Runs once after the UI has closed its end (e.g. logs off).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Hands every action to `backend`, in order, until the UI closes its end; then closes
/// the backend.
pub async fn run_glue<B: Backend>(mut backend: B, end: GlueEnd) {
    let GlueEnd { mut actions, sink } = end;
    backend.start(&sink).await;
    while let Some(action) = actions.recv().await {
        backend.perform(action, &sink).await;
    }
    backend.close().await;
}

/// Pipes the engine's event stream to the UI until either side closes.
pub async fn forward_events(mut events: mpsc::Receiver<Event>, sink: EventSink) {
    while let Some(event) = events.recv().await {
        if sink.tx.is_closed() {
            return;
        }
        sink.engine(event).await;
    }
}
