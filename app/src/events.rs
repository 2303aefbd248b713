//! The engine's events as CONTRACT.md spells them: one JSON object per line with `--json`,
//! one human line otherwise. The desktop app consumes the same values.
//!
//! Field spellings are part of the external contract: extend (new events, new fields),
//! never rename. Ids (`id`, `call_id`) are the lowercase hex of the wire ids; `sent_at` is
//! milliseconds since the Unix epoch as the sender's clock had it.

use proto::UserName;
use serde::{Deserialize, Serialize};

/// Presence as shown to users (`invisible` is never shown: others see `offline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Away,
    Busy,
    Offline,
}

impl From<proto::supernode::PresenceStatus> for Status {
    fn from(status: proto::supernode::PresenceStatus) -> Self {
        use proto::supernode::PresenceStatus as P;
        match status {
            P::Online => Self::Online,
            P::Away => Self::Away,
            P::Busy => Self::Busy,
            P::Invisible | P::Offline => Self::Offline,
        }
    }
}

/// How a call's media flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    Direct,
    Relay,
}

/// `call_ended.reason` (plus `answered_elsewhere` on a device whose call another device of
/// the same user took): the call core's own reason, spelled by its serde derive.
pub use client_core::call::EndReason;

/// `call_ended.stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    pub duration_s: f64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub loss_pct: f64,
    pub jitter_ms: f64,
    pub rtt_ms: f64,
    pub mos: f64,
}

/// One event (CONTRACT.md "JSON events").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Registered {
        user: UserName,
    },
    LoggedIn {
        user: UserName,
        /// The home supernode's address, `null` until homed.
        supernode: Option<String>,
    },
    Presence {
        user: UserName,
        status: Status,
        /// Extension: the user's status message ("in a meeting"); left out when empty.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
    },
    ContactRequest {
        from: UserName,
    },
    ContactAdded {
        user: UserName,
    },
    Chat {
        from: UserName,
        id: String,
        text: String,
        sent_at: u64,
    },
    ChatAccepted {
        to: UserName,
        id: String,
        stored: bool,
    },
    ChatDelivered {
        to: UserName,
        id: String,
    },
    CallIncoming {
        from: UserName,
        call_id: String,
    },
    CallRinging {
        call_id: String,
        setup_ms: u64,
    },
    CallConnected {
        call_id: String,
        peer: UserName,
        path: PathKind,
        setup_ms: u64,
    },
    /// Extension: a further participant's leg of a conference this device hosts connected
    /// (the first leg is announced by `call_connected`).
    CallParticipantJoined {
        call_id: String,
        user: UserName,
    },
    /// Extension: one participant's leg of a conference this device hosts ended while the
    /// call goes on with the others (the last leg's end is `call_ended`).
    CallParticipantLeft {
        call_id: String,
        user: UserName,
        reason: EndReason,
    },
    CallPath {
        call_id: String,
        path: PathKind,
    },
    CallHeld {
        call_id: String,
    },
    CallResumed {
        call_id: String,
    },
    CallEnded {
        call_id: String,
        reason: EndReason,
        stats: CallStats,
        /// Why a `failed` call failed (an identity error starts with "identity").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Extension: the running call's figures so far and the peak audio levels since the
    /// last such event (0.0 silence, 1.0 full scale); sent periodically while the call's
    /// audio runs, only when the engine is configured for it (the desktop app's meters).
    CallStats {
        call_id: String,
        stats: CallStats,
        input_level: f32,
        output_level: f32,
    },
    /// Extension: the credential expires soon and the login server cannot be reached.
    CredentialExpiring {
        expires_in_s: u64,
    },
    Error {
        message: String,
    },
}

impl Event {
    /// The `--json` line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Serialising these plain values cannot fail; say so rather than panic.
            format!(r#"{{"event":"error","message":"cannot encode an event: {e}"}}"#)
        })
    }

    /// The human line (without `--json`).
    pub fn to_text(&self) -> String {
        match self {
            Self::Registered { user } => format!("registered {user}"),
            Self::LoggedIn { user, supernode } => match supernode {
                Some(s) => format!("logged in as {user} (home supernode {s})"),
                None => format!("logged in as {user}"),
            },
            Self::Presence {
                user,
                status,
                message,
            } => {
                if message.is_empty() {
                    format!("{user} is {}", status_text(*status))
                } else {
                    format!("{user} is {}: {message}", status_text(*status))
                }
            }
            Self::ContactRequest { from } => format!("{from} asks to add you as a contact"),
            Self::ContactAdded { user } => format!("{user} is now a contact"),
            Self::Chat { from, text, .. } => format!("{from}: {text}"),
            Self::ChatAccepted { to, stored, .. } => {
                if *stored {
                    format!("message to {to} stored until they come online")
                } else {
                    format!("message to {to} sent")
                }
            }
            Self::ChatDelivered { to, .. } => format!("message to {to} delivered"),
            Self::CallIncoming { from, .. } => format!("incoming call from {from}"),
            Self::CallRinging { setup_ms, .. } => format!("ringing ({setup_ms} ms)"),
            Self::CallConnected {
                peer,
                path,
                setup_ms,
                ..
            } => format!(
                "connected to {peer} ({}, {setup_ms} ms)",
                match path {
                    PathKind::Direct => "direct",
                    PathKind::Relay => "relayed",
                }
            ),
            Self::CallParticipantJoined { user, .. } => format!("{user} joined the call"),
            Self::CallParticipantLeft { user, reason, .. } => {
                format!("{user} left the call ({})", reason.as_str())
            }
            Self::CallPath { path, .. } => match path {
                PathKind::Direct => "call now flows directly".to_string(),
                PathKind::Relay => "call now flows through a relay".to_string(),
            },
            Self::CallHeld { .. } => "call on hold".to_string(),
            Self::CallResumed { .. } => "call resumed".to_string(),
            Self::CallEnded {
                reason,
                stats,
                detail,
                ..
            } => {
                let why = reason.as_str();
                let mut line = format!(
                    "call ended: {why} after {:.0} s (loss {:.1}%, jitter {:.0} ms, MOS {:.1})",
                    stats.duration_s, stats.loss_pct, stats.jitter_ms, stats.mos
                );
                if let Some(detail) = detail {
                    line.push_str(&format!(": {detail}"));
                }
                line
            }
            Self::CallStats { stats, .. } => format!(
                "call quality: MOS {:.1}, loss {:.1}%, jitter {:.0} ms, round trip {:.0} ms",
                stats.mos, stats.loss_pct, stats.jitter_ms, stats.rtt_ms
            ),
            Self::CredentialExpiring { expires_in_s } => format!(
                "your sign-in expires in {} min and the login server cannot be reached",
                expires_in_s / 60
            ),
            Self::Error { message } => format!("error: {message}"),
        }
    }
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Online => "online",
        Status::Away => "away",
        Status::Busy => "busy",
        Status::Offline => "offline",
    }
}

/// One `search` result line (no `event` field, per CONTRACT.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    pub user: UserName,
    pub display_name: String,
    pub status: Status,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserName {
        name.parse().expect("valid")
    }

    #[test]
    fn events_are_spelled_as_the_contract_says() {
        let line = Event::ChatAccepted {
            to: user("bob"),
            id: "ab".into(),
            stored: true,
        }
        .to_json_line();
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(value["event"], "chat_accepted");
        assert_eq!(value["to"], "bob");
        assert_eq!(value["stored"], true);

        let line = Event::CallEnded {
            call_id: "c1".into(),
            reason: EndReason::Hangup,
            stats: CallStats::default(),
            detail: None,
        }
        .to_json_line();
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(value["event"], "call_ended");
        assert_eq!(value["reason"], "hangup");
        for field in [
            "duration_s",
            "packets_sent",
            "packets_received",
            "loss_pct",
            "jitter_ms",
            "rtt_ms",
            "mos",
        ] {
            assert!(value["stats"].get(field).is_some(), "{field}");
        }
        assert!(value.get("detail").is_none());

        let line = Event::CallConnected {
            call_id: "c1".into(),
            peer: user("bob"),
            path: PathKind::Relay,
            setup_ms: 12,
        }
        .to_json_line();
        assert!(line.contains(r#""path":"relay""#), "{line}");
        let line = Event::Presence {
            user: user("bob"),
            status: Status::Away,
            message: String::new(),
        }
        .to_json_line();
        assert_eq!(line, r#"{"event":"presence","user":"bob","status":"away"}"#);
        let line = Event::Presence {
            user: user("bob"),
            status: Status::Busy,
            message: "in a meeting".into(),
        }
        .to_json_line();
        assert_eq!(
            line,
            r#"{"event":"presence","user":"bob","status":"busy","message":"in a meeting"}"#
        );
    }

    #[test]
    fn conference_participant_events_are_spelled_like_the_others() {
        let line = Event::CallParticipantJoined {
            call_id: "c1".into(),
            user: user("carol"),
        }
        .to_json_line();
        assert_eq!(
            line,
            r#"{"event":"call_participant_joined","call_id":"c1","user":"carol"}"#
        );
        let line = Event::CallParticipantLeft {
            call_id: "c1".into(),
            user: user("bob"),
            reason: EndReason::Hangup,
        }
        .to_json_line();
        assert_eq!(
            line,
            r#"{"event":"call_participant_left","call_id":"c1","user":"bob","reason":"hangup"}"#
        );
        let back: Event = serde_json::from_str(&line).expect("parses back");
        assert!(
            matches!(back, Event::CallParticipantLeft { .. }),
            "{back:?}"
        );
    }

    #[test]
    fn invisible_is_shown_as_offline() {
        assert_eq!(
            Status::from(proto::supernode::PresenceStatus::Invisible),
            Status::Offline
        );
    }
}
