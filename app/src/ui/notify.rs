//! Desktop notifications (the freedesktop notification service through `notify-rust`) for
//! incoming calls and messages while the window is in the background.
//!
//! Sending runs on a thread of its own: D-Bus may be slow, or have no notification daemon at
//! all (a bare X server, Xvfb, a CI box). A failure is logged once and the app goes on; a
//! full queue drops the notification rather than wait.
//!
//! What it does not do: decide when to notify (the model says what, the app checks focus).

use std::sync::mpsc;

/// One notification: a title and a line of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopNote {
    pub title: String,
    pub body: String,
}

/// Shows [`DesktopNote`]s.
pub trait Notifier {
    fn notify(&mut self, note: DesktopNote);
}

/// Shows nothing (tests, or notifications unwanted).
#[derive(Debug, Default)]
pub struct NoNotifications;

impl Notifier for NoNotifications {
    fn notify(&mut self, _note: DesktopNote) {}
}

/// Notifications waiting for the sending thread; more are dropped.
const QUEUE: usize = 8;

/// The desktop's notification service, fed from a background thread.
#[derive(Debug)]
pub struct DesktopNotifier {
    tx: mpsc::SyncSender<DesktopNote>,
}

impl DesktopNotifier {
    /// Starts the sending thread.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<DesktopNote>(QUEUE);
        std::thread::Builder::new()
            .name("ui-notifications".into())
            .spawn(move || {
                let mut warned = false;
                while let Ok(note) = rx.recv() {
                    let shown = notify_rust::Notification::new()
                        .appname("Peerphone")
                        .summary(&note.title)
                        .body(&note.body)
                        .icon("call-start")
                        .show();
                    if let Err(error) = shown
                        && !warned
                    {
                        warned = true;
                        tracing::warn!(%error, "desktop notifications are not available");
                    }
                }
            })?;
        Ok(Self { tx })
    }
}

impl Notifier for DesktopNotifier {
    fn notify(&mut self, note: DesktopNote) {
        // Full: the service is slow or hanging; a missed notification is harmless.
        let _ = self.tx.try_send(note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn notifying_never_blocks_even_without_a_notification_service() {
        // Whatever this machine's session bus offers (none under CI), the caller returns at
        // once, also when the queue overflows.
        let mut notifier = DesktopNotifier::start().expect("thread");
        let started = Instant::now();
        for i in 0..(QUEUE * 4) {
            notifier.notify(DesktopNote {
                title: "Peerphone test".into(),
                body: format!("note {i}"),
            });
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
