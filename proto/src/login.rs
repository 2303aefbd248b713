//! Messages between the login server and its clients (devices) and supernodes.
//!
//! # Stream protocol
//! Every request travels on its own bidirectional QUIC (or TCP+TLS) stream as
//! [`crate::frame`]s of at most [`MAX_LOGIN_FRAME`] bytes:
//! 1. the opener sends a [`StreamHello`] (protocol version and role);
//! 2. then exactly one request: [`ClientToLogin`] for the `Client` role,
//!    [`SupernodeToLogin`] for the `Supernode` role;
//! 3. the server answers with exactly one [`LoginToClient`] / [`LoginToSupernode`] and
//!    finishes the stream.
//!
//! A version the server does not speak, a malformed frame or an unknown message kind is
//! answered with a typed [`LoginError`] and the stream is closed; the connection and the
//! server carry on.
//!
//! Who the peer is comes from TLS: a client's TLS key is its device key (so `Login` binds
//! the credential to it without naming it), a supernode's TLS key is its supernode key.
//! Requests on behalf of a logged-in user carry that user's credential, which the server
//! checks against the TLS key; the server keeps no per-connection session.
//!
//! # Wire compatibility
//! postcard encodes an enum variant as its position, so every enum here is append-only:
//! the `Kind N` in each variant's doc is its wire discriminant and is never reused.
//!
//! What it does not do: no IO; the login server's policy (throttling, admission) is not
//! here, only its vocabulary.

use crate::credential::{SignedCredential, SignedRevocationList};
use crate::directory::{SignedDirectory, SupernodeAddrs};
use crate::frame::{self, FrameError};
use crate::keys::PublicKey;
use crate::names::{DisplayName, MessageId, UserName};
use crate::time::UnixTime;
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroize;

/// The largest frame on a login-server stream, in either direction.
pub const MAX_LOGIN_FRAME: usize = frame::DEFAULT_MAX_FRAME;

/// The largest answer to a supernode (revocation lists and directories can be big).
pub const MAX_LOGIN_TO_SUPERNODE_FRAME: usize = 2 * 1024 * 1024;

/// Passwords longer than this (in bytes) are refused by the decoder.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// New passwords must have at least this many characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The largest sealed payload of one offline envelope.
pub const MAX_SEALED_BYTES: usize = 16 * 1024;

/// The most envelopes handed over per mailbox fetch, and acknowledged per request.
pub const MAX_MAILBOX_BATCH: usize = 64;

/// The most results of a search.
pub const MAX_SEARCH_RESULTS: usize = 20;

/// Search prefixes longer than this (in characters) are refused.
pub const MAX_SEARCH_PREFIX_CHARS: usize = 64;

/// The most credentials of one user reported by a lookup.
pub const MAX_LOOKUP_CREDENTIALS: usize = 8;

/// A password in transit. Never printed; wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Password(String);

/// A password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
}

impl Password {
    /// Any password up to [`MAX_PASSWORD_BYTES`]; for logging in with existing passwords.
    pub fn new(password: impl Into<String>) -> Result<Self, PasswordError> {
        let password = password.into();
        if password.len() > MAX_PASSWORD_BYTES {
            let mut password = password;
            password.zeroize();
            return Err(PasswordError::TooLong);
        }
        Ok(Self(password))
    }

    /// Whether this password is acceptable as a new one (registration, change).
    pub fn check_new(&self) -> Result<(), PasswordError> {
        if self.0.chars().count() < MIN_PASSWORD_CHARS {
            return Err(PasswordError::TooShort);
        }
        Ok(())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl TryFrom<String> for Password {
    type Error = PasswordError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Password> for String {
    fn from(mut value: Password) -> Self {
        std::mem::take(&mut value.0)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Who opens a stream to the login server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Role {
    /// Kind 0: a device (the `peerphone` app).
    Client = 0,
    /// Kind 1: a supernode.
    Supernode = 1,
}

/// The first frame of every stream to the login server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHello {
    /// Always first on the wire, so a server can read it whatever follows.
    pub protocol_version: u16,
    pub role: Role,
}

impl StreamHello {
    pub fn new(role: Role) -> Self {
        Self {
            protocol_version: crate::PROTOCOL_VERSION,
            role,
        }
    }
}

/// A device's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum ClientToLogin {
    /// Kind 0: create an account. Answered with [`LoginToClient::Registered`].
    Register {
        user: UserName,
        display_name: DisplayName,
        password: Password,
    } = 0,
    /// Kind 1: authenticate; the credential is bound to the TLS peer key.
    /// Answered with [`LoginToClient::LoggedIn`].
    Login { user: UserName, password: Password } = 1,
    /// Kind 2: change the password. Revokes every credential the user holds and answers
    /// with a fresh one for this device ([`LoginToClient::LoggedIn`]).
    ChangePassword {
        user: UserName,
        old_password: Password,
        new_password: Password,
    } = 2,
    /// Kind 3: delete the account and everything stored for it; revokes its credentials.
    /// Answered with [`LoginToClient::Done`].
    DeleteAccount { user: UserName, password: Password } = 3,
    /// Kind 4: a request on behalf of a logged-in user. `credential` must be valid, not
    /// revoked, and name the TLS peer key.
    AsUser {
        credential: SignedCredential,
        request: UserRequest,
    } = 4,
    /// Kind 5: the current signed supernode directory ([`LoginToClient::Directory`]).
    FetchDirectory = 5,
}

/// What a logged-in user asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum UserRequest {
    /// Kind 0: a fresh credential before this one expires ([`LoginToClient::LoggedIn`]).
    Refresh = 0,
    /// Kind 1: the buddy list ([`LoginToClient::Contacts`]).
    ListContacts = 1,
    /// Kind 2: ask `user` to become a contact (an authorization request). When `user`
    /// already asked us, this accepts. Answered with [`LoginToClient::Done`].
    AddContact { user: UserName } = 2,
    /// Kind 3: accept `user`'s pending request.
    AcceptContact { user: UserName } = 3,
    /// Kind 4: decline `user`'s pending request.
    DeclineContact { user: UserName } = 4,
    /// Kind 5: remove `user` from the buddy list, both ways.
    RemoveContact { user: UserName } = 5,
    /// Kind 6: block `user`: no requests or offline messages from them reach us.
    BlockContact { user: UserName } = 6,
    /// Kind 7: lift a block.
    UnblockContact { user: UserName } = 7,
    /// Kind 8: store an envelope for an offline user. `envelope.from` must be the
    /// credential's user. Answered with [`LoginToClient::Stored`] only once it is durable.
    StoreOffline { envelope: Envelope } = 8,
    /// Kind 9: envelopes waiting for us, oldest first ([`LoginToClient::Mailbox`]).
    FetchMailbox { max: u16 } = 9,
    /// Kind 10: delete delivered envelopes (at most [`MAX_MAILBOX_BATCH`] ids).
    AckMailbox { ids: Vec<MessageId> } = 10,
    /// Kind 11: one user by exact name ([`LoginToClient::User`]).
    Lookup { user: UserName } = 11,
    /// Kind 12: exact user name or display-name prefix ([`LoginToClient::Users`]).
    Search { query: String, limit: u16 } = 12,
    /// Kind 13: change the user's display name (the same rules as at registration: at most
    /// [`DisplayName::MAX_CHARS`] characters, no control or invisible formatting
    /// characters). Credentials carry the display name, so the answer is a fresh credential
    /// for this device with the new name ([`LoginToClient::LoggedIn`]); older credentials
    /// stay valid until they expire. Throttled per account.
    SetDisplayName { display_name: DisplayName } = 13,
}

/// An end-to-end encrypted message waiting for an offline user. The login server sees only
/// the routing fields; `sealed` is opaque to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: MessageId,
    pub from: UserName,
    pub to: UserName,
    pub sent_at: UnixTime,
    /// At most [`MAX_SEALED_BYTES`].
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// The login server's answer to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum LoginToClient {
    /// Kind 0: the request failed.
    Error(LoginError) = 0,
    /// Kind 1: the account exists now.
    Registered { user: UserName } = 1,
    /// Kind 2: a credential for this device.
    LoggedIn { credential: SignedCredential } = 2,
    /// Kind 3: the request succeeded and has nothing to report.
    Done = 3,
    /// Kind 4: the buddy list, sorted by user name.
    Contacts { contacts: Vec<Contact> } = 4,
    /// Kind 5: waiting envelopes; `more` when the mailbox holds further ones.
    Mailbox {
        envelopes: Vec<Envelope>,
        more: bool,
    } = 5,
    /// Kind 6: the envelope is stored durably (or was already).
    Stored { id: MessageId } = 6,
    /// Kind 7: a lookup's answer; `None` when no such user exists.
    User(Option<UserInfo>) = 7,
    /// Kind 8: search results, at most [`MAX_SEARCH_RESULTS`].
    Users(Vec<UserInfo>) = 8,
    /// Kind 9: the signed supernode directory.
    Directory(SignedDirectory) = 9,
}

/// One entry of a buddy list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub user: UserName,
    pub display_name: DisplayName,
    pub state: ContactState,
}

/// Where a buddy-list entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum ContactState {
    /// Kind 0: both agreed.
    Accepted = 0,
    /// Kind 1: we asked them; they have not answered.
    RequestSent = 1,
    /// Kind 2: they asked us; we have not answered.
    RequestReceived = 2,
    /// Kind 3: we blocked them.
    Blocked = 3,
}

/// What the login server knows about a user, for search and for finding them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub user: UserName,
    pub display_name: DisplayName,
    /// The last login, refresh or homing report.
    pub last_seen: Option<UnixTime>,
    /// Unexpired, unrevoked credentials of devices seen within the last 72 h (at most
    /// [`MAX_LOOKUP_CREDENTIALS`]); empty in search results.
    pub credentials: Vec<SignedCredential>,
    /// The supernode the user homed on, when that was within the last 72 h.
    pub home_supernode: Option<PublicKey>,
}

/// A supernode's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum SupernodeToLogin {
    /// Kind 0: ask to be admitted (or re-admitted) to the directory with these addresses.
    /// Answered with [`LoginToSupernode::Admitted`].
    Admit { addrs: SupernodeAddrs } = 0,
    /// Kind 1: still alive; without one every [`SUPERNODE_STALE_SECS`] it drops out of the
    /// directory. Answered with [`LoginToSupernode::Done`] or `Error(NotAdmitted)` when it
    /// must `Admit` again.
    Heartbeat { homed_users: u32 } = 1,
    /// Kind 2: the signed directory ([`LoginToSupernode::Directory`]).
    FetchDirectory = 2,
    /// Kind 3: the signed revocation list when its version is above `known_version`
    /// ([`LoginToSupernode::Revocations`]), else [`LoginToSupernode::RevocationsUnchanged`].
    FetchRevocations { known_version: u64 } = 3,
    /// Kind 4: a user by exact name ([`LoginToSupernode::User`]).
    Lookup { user: UserName } = 4,
    /// Kind 5: exact user name or display-name prefix ([`LoginToSupernode::Users`]).
    Search { query: String, limit: u16 } = 5,
    /// Kind 6: the holder of `credential` homed on this supernode (it proved its key).
    /// Answered with [`LoginToSupernode::Done`].
    UserHomed { credential: SignedCredential } = 6,
}

/// Seconds without a heartbeat after which a supernode drops out of the directory.
pub const SUPERNODE_STALE_SECS: u64 = 30;

/// How often supernodes should heartbeat.
pub const SUPERNODE_HEARTBEAT_SECS: u64 = 10;

/// How often supernodes should poll revocations (they must learn of one within 60 s).
pub const REVOCATION_POLL_SECS: u64 = 30;

/// The login server's answer to a supernode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u32)]
pub enum LoginToSupernode {
    /// Kind 0: the request failed.
    Error(LoginError) = 0,
    /// Kind 1: admitted; here is the directory that lists it.
    Admitted { directory: SignedDirectory } = 1,
    /// Kind 2: the request succeeded and has nothing to report.
    Done = 2,
    /// Kind 3: the signed directory.
    Directory(SignedDirectory) = 3,
    /// Kind 4: a newer signed revocation list.
    Revocations(SignedRevocationList) = 4,
    /// Kind 5: nothing newer than the supernode's version.
    RevocationsUnchanged { version: u64 } = 5,
    /// Kind 6: a lookup's answer; `None` when no such user exists.
    User(Option<UserInfo>) = 6,
    /// Kind 7: search results.
    Users(Vec<UserInfo>) = 7,
}

/// Why a request failed. Every variant is safe to show to the requester: none reveals
/// whether an account exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[repr(u32)]
pub enum LoginError {
    /// Kind 0.
    #[error("protocol version {client} is not supported (server speaks {server})")]
    VersionMismatch { client: u16, server: u16 } = 0,
    /// Kind 1.
    #[error("malformed request")]
    Malformed = 1,
    /// Kind 2.
    #[error("unknown message kind {kind}")]
    UnknownKind { kind: u32 } = 2,
    /// Kind 3.
    #[error("request too large")]
    TooLarge = 3,
    /// Kind 4: the same answer for an unknown user and a wrong password.
    #[error("wrong user name or password")]
    InvalidCredentials = 4,
    /// Kind 5.
    #[error("too many attempts; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u32 } = 5,
    /// Kind 6.
    #[error("user name is taken")]
    UserNameTaken = 6,
    /// Kind 7.
    #[error("password refused: {0}")]
    WeakPassword(String) = 7,
    /// Kind 8: the credential is invalid, expired, revoked or not for this device.
    #[error("not logged in: {0}")]
    NotAuthenticated(String) = 8,
    /// Kind 9.
    #[error("no such user")]
    NoSuchUser = 9,
    /// Kind 10.
    #[error("not allowed")]
    NotAllowed = 10,
    /// Kind 11.
    #[error("the recipient's mailbox is full")]
    MailboxFull = 11,
    /// Kind 12.
    #[error("supernode not admitted: {0}")]
    NotAdmitted(String) = 12,
    /// Kind 13: the server is overloaded; retry later.
    #[error("server busy; try again in {retry_after_secs} s")]
    Busy { retry_after_secs: u32 } = 13,
    /// Kind 14: a fault on the server's side (database unavailable...).
    #[error("internal server error")]
    Internal = 14,
    /// Kind 15: the peer took too long to send its request.
    #[error("request timed out")]
    Timeout = 15,
    /// Kind 16: the role in the stream hello is not served on this connection.
    #[error("wrong role for this request")]
    WrongRole = 16,
}

pub use crate::kind::DecodeError;

impl From<DecodeError> for LoginError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::UnknownKind(kind) => LoginError::UnknownKind { kind },
            DecodeError::Malformed(FrameError::TooLarge { .. }) => LoginError::TooLarge,
            DecodeError::Malformed(_) => LoginError::Malformed,
        }
    }
}

/// Decodes an enum whose variant count is `kinds`, telling an unknown discriminant apart
/// from a malformed body.
fn decode_enum<T: serde::de::DeserializeOwned>(body: &[u8], kinds: u32) -> Result<T, DecodeError> {
    crate::kind::decode_kinded(body, kinds)
}

/// Decodes a [`StreamHello`]. A hello with a version this side does not speak is still
/// returned (check `protocol_version`), as long as the version field itself is readable:
/// later versions may change what follows it.
pub fn decode_stream_hello(body: &[u8]) -> Result<StreamHello, DecodeError> {
    let (protocol_version, rest) =
        postcard::take_from_bytes::<u16>(body).map_err(|e| FrameError::Decode(e.to_string()))?;
    if protocol_version != crate::PROTOCOL_VERSION {
        return Ok(StreamHello {
            protocol_version,
            role: Role::Client,
        });
    }
    let role = decode_enum::<Role>(rest, 2)?;
    Ok(StreamHello {
        protocol_version,
        role,
    })
}

/// Decodes a device's request.
pub fn decode_client_to_login(body: &[u8]) -> Result<ClientToLogin, DecodeError> {
    let message: ClientToLogin = decode_enum(body, 6)?;
    if let ClientToLogin::AsUser { request, .. } = &message {
        // The nested request's kind is known here (the whole body decoded), so only the
        // bounds the type system cannot express remain.
        request_bounds(request)?;
    }
    Ok(message)
}

fn request_bounds(request: &UserRequest) -> Result<(), DecodeError> {
    let too_large =
        |len: usize, max: usize| Err(DecodeError::Malformed(FrameError::TooLarge { len, max }));
    match request {
        UserRequest::StoreOffline { envelope } if envelope.sealed.len() > MAX_SEALED_BYTES => {
            too_large(envelope.sealed.len(), MAX_SEALED_BYTES)
        }
        UserRequest::AckMailbox { ids } if ids.len() > MAX_MAILBOX_BATCH => {
            too_large(ids.len(), MAX_MAILBOX_BATCH)
        }
        UserRequest::Search { query, .. } if query.chars().count() > MAX_SEARCH_PREFIX_CHARS => {
            too_large(query.len(), MAX_SEARCH_PREFIX_CHARS)
        }
        _ => Ok(()),
    }
}

/// Decodes the login server's answer to a device.
pub fn decode_login_to_client(body: &[u8]) -> Result<LoginToClient, DecodeError> {
    decode_enum(body, 10)
}

/// Decodes a supernode's request.
pub fn decode_supernode_to_login(body: &[u8]) -> Result<SupernodeToLogin, DecodeError> {
    let message: SupernodeToLogin = decode_enum(body, 7)?;
    if let SupernodeToLogin::Search { query, .. } = &message
        && query.chars().count() > MAX_SEARCH_PREFIX_CHARS
    {
        return Err(DecodeError::Malformed(FrameError::TooLarge {
            len: query.len(),
            max: MAX_SEARCH_PREFIX_CHARS,
        }));
    }
    Ok(message)
}

/// Decodes the login server's answer to a supernode.
pub fn decode_login_to_supernode(body: &[u8]) -> Result<LoginToSupernode, DecodeError> {
    decode_enum(body, 8)
}

/// Feeds `bytes` to every decoder of this module, as the fuzz target and the property
/// tests do: it must return, never panic.
pub fn decode_any(bytes: &[u8]) {
    let _ = decode_stream_hello(bytes);
    let _ = decode_client_to_login(bytes);
    let _ = decode_login_to_client(bytes);
    let _ = decode_supernode_to_login(bytes);
    let _ = decode_login_to_supernode(bytes);
    let mut decoder = frame::FrameDecoder::new(MAX_LOGIN_FRAME);
    // One push of the whole input is always within the decoder's limit.
    let _ = decoder.push(bytes);
    while let Ok(Some(body)) = decoder.next_frame() {
        let _ = decode_client_to_login(&body);
        let _ = decode_supernode_to_login(&body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use proptest::prelude::*;

    fn sample_requests() -> Vec<ClientToLogin> {
        let alice = UserName::new("alice").expect("valid");
        let pw = Password::new("correct horse").expect("valid");
        let credential = SignedCredential::issue(
            &crate::Credential {
                serial: 1,
                user: alice.clone(),
                display_name: DisplayName::new("Alice").expect("valid"),
                device_key: SecretKey::generate().public(),
                issued_at: UnixTime::from_secs(1),
                expires_at: UnixTime::from_secs(2),
            },
            &SecretKey::generate(),
        );
        vec![
            ClientToLogin::Register {
                user: alice.clone(),
                display_name: DisplayName::new("Alice").expect("valid"),
                password: pw.clone(),
            },
            ClientToLogin::Login {
                user: alice.clone(),
                password: pw.clone(),
            },
            ClientToLogin::FetchDirectory,
            ClientToLogin::AsUser {
                credential,
                request: UserRequest::StoreOffline {
                    envelope: Envelope {
                        id: MessageId([7; 16]),
                        from: alice.clone(),
                        to: alice,
                        sent_at: UnixTime::from_secs(3),
                        sealed: vec![1, 2, 3],
                    },
                },
            },
        ]
    }

    #[test]
    fn requests_round_trip_through_frames() {
        for request in sample_requests() {
            let bytes = frame::encode(&request, MAX_LOGIN_FRAME).expect("encode");
            let decoded = decode_client_to_login(&bytes[frame::HEADER_LEN..]).expect("decode");
            assert_eq!(decoded, request);
        }
    }

    #[test]
    fn unknown_kinds_are_told_apart_from_garbage() {
        assert_eq!(
            decode_client_to_login(&[99]),
            Err(DecodeError::UnknownKind(99))
        );
        assert_eq!(
            decode_supernode_to_login(&[7]),
            Err(DecodeError::UnknownKind(7))
        );
        assert!(matches!(
            decode_client_to_login(&[0, 0xff]),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            LoginError::from(DecodeError::UnknownKind(99)),
            LoginError::UnknownKind { kind: 99 }
        );
    }

    #[test]
    fn a_display_name_change_follows_the_registration_rules_on_the_wire() {
        let ClientToLogin::AsUser { credential, .. } = sample_requests().swap_remove(3) else {
            unreachable!("sample 3 is AsUser")
        };
        let request = ClientToLogin::AsUser {
            credential,
            request: UserRequest::SetDisplayName {
                display_name: DisplayName::new("Zoë 🎧").expect("valid"),
            },
        };
        let body = postcard::to_allocvec(&request).expect("encode");
        assert_eq!(decode_client_to_login(&body), Ok(request.clone()));
        // The same name with a control character spliced in (same byte length): the
        // decoder refuses it as it would in a registration.
        let at = body
            .windows(2)
            .position(|w| w == "ë".as_bytes())
            .expect("name bytes");
        let mut bad = body.clone();
        bad[at] = 0x1b;
        bad[at + 1] = b'x';
        assert!(decode_client_to_login(&bad).is_err());
        let with_name = |name: String| {
            postcard::to_allocvec(&(4u8, credential_bytes_of(&request), 13u8, name))
                .expect("encode")
        };
        let longest = with_name("é".repeat(DisplayName::MAX_CHARS));
        assert!(decode_client_to_login(&longest).is_ok());
        let long = with_name("é".repeat(DisplayName::MAX_CHARS + 1));
        assert!(decode_client_to_login(&long).is_err());
    }

    fn credential_bytes_of(request: &ClientToLogin) -> SignedCredential {
        match request {
            ClientToLogin::AsUser { credential, .. } => credential.clone(),
            _ => unreachable!("an AsUser request"),
        }
    }

    #[test]
    fn a_hello_of_another_version_is_still_readable() {
        let mut body = postcard::to_allocvec(&7u16).expect("encode");
        body.extend([0xff, 0xff, 0xff]);
        assert_eq!(
            decode_stream_hello(&body).expect("decode").protocol_version,
            7
        );
        let hello = StreamHello::new(Role::Supernode);
        let body = postcard::to_allocvec(&hello).expect("encode");
        assert_eq!(decode_stream_hello(&body), Ok(hello));
    }

    #[test]
    fn oversized_fields_are_refused_by_the_decoder() {
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(Password::new(long.clone()), Err(PasswordError::TooLong));
        let body = postcard::to_allocvec(&(1u8, "alice", long)).expect("encode");
        assert!(decode_client_to_login(&body).is_err());
        assert_eq!(
            Password::new("short").expect("valid").check_new(),
            Err(PasswordError::TooShort)
        );
        assert_eq!(
            format!("{:?}", Password::new("secret").expect("valid")),
            "Password(..)"
        );
    }

    #[test]
    fn every_kind_in_the_docs_matches_the_wire() {
        let kinds = [
            (LoginToClient::Done, 3u8),
            (LoginToClient::Users(vec![]), 8),
            (LoginToClient::Error(LoginError::Internal), 0),
        ];
        for (message, kind) in kinds {
            assert_eq!(postcard::to_allocvec(&message).expect("encode")[0], kind);
        }
        let err = LoginError::Throttled {
            retry_after_secs: 3,
        };
        assert_eq!(postcard::to_allocvec(&err).expect("encode")[0], 5);
        assert_eq!(
            postcard::to_allocvec(&SupernodeToLogin::UserHomed {
                credential: SignedCredential::from_bytes(&sample_credential_bytes())
                    .expect("decode")
            })
            .expect("encode")[0],
            6
        );
    }

    fn sample_credential_bytes() -> Vec<u8> {
        match &sample_requests()[3] {
            ClientToLogin::AsUser { credential, .. } => credential.to_bytes(),
            _ => unreachable!("sample 3 is AsUser"),
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            decode_any(&bytes);
        }

        #[test]
        fn corrupted_requests_never_panic(index in 0usize..4, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let request = &sample_requests()[index];
            let mut bytes = postcard::to_allocvec(request).expect("encode");
            for (at, xor) in flips {
                let len = bytes.len();
                bytes[at % len] ^= xor;
            }
            let _ = decode_client_to_login(&bytes);
            let _ = decode_login_to_client(&bytes);
            let _ = decode_supernode_to_login(&bytes);
        }
    }
}
