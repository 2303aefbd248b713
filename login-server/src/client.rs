//! Talking to a login server: for devices (the app) and for supernodes.
//!
//! A [`LoginConnection`] pins the authority key (the login server's TLS identity is the
//! authority key) and sends each request on its own stream: [`StreamHello`], request,
//! one answer. An `Error` answer becomes [`ClientError::Server`], so callers match on
//! [`LoginError`] for throttling, wrong passwords and the like.

use proto::credential::SignedRevocationList;
use proto::directory::{SignedDirectory, SupernodeAddrs};
use proto::login::{
    self, ClientToLogin, Contact, Envelope, LoginError, LoginToClient, LoginToSupernode,
    MAX_LOGIN_FRAME, MAX_LOGIN_TO_SUPERNODE_FRAME, Password, Role, StreamHello, SupernodeToLogin,
    UserInfo, UserRequest,
};
use proto::{DisplayName, MessageId, PublicKey, SignedCredential, UserName};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use transport::{Conn, Endpoint, PeerPolicy, Tuning};

/// How long one request may take end to end.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to the login server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The login server answered with an error.
    #[error("{0}")]
    Server(LoginError),
    #[error("cannot reach the login server at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("connection to the login server failed: {0}")]
    Connection(String),
    #[error("the login server sent a malformed answer: {0}")]
    BadAnswer(String),
    #[error("the login server sent an unexpected answer")]
    UnexpectedAnswer,
    #[error("the login server did not answer within {0:?}")]
    TimedOut(Duration),
}

/// A connection to a login server.
#[derive(Clone)]
pub struct LoginConnection {
    conn: Conn,
}

impl std::fmt::Debug for LoginConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginConnection")
            .field("server", &self.conn.remote_address())
            .finish()
    }
}

impl LoginConnection {
    /// Dials `addr` from `endpoint` (QUIC, falling back to TCP when UDP does not get
    /// through), accepting only the `authority` key.
    pub async fn connect(
        endpoint: &Endpoint,
        addr: SocketAddr,
        authority: PublicKey,
    ) -> Result<Self, ClientError> {
        let conn = endpoint
            .connect_with_tcp_fallback(addr, PeerPolicy::Key(authority), &Tuning::client())
            .await
            .map_err(|e| ClientError::Unreachable {
                addr,
                reason: e.to_string(),
            })?;
        Ok(Self { conn })
    }

    /// Wraps an existing connection (already pinned to the authority key).
    pub fn from_conn(conn: Conn) -> Self {
        Self { conn }
    }

    pub fn close(&self) {
        self.conn.close(0, "done");
    }

    async fn exchange(
        &self,
        role: Role,
        request: &impl serde::Serialize,
        max_answer: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let work = async {
            let (mut send, mut recv) = self
                .conn
                .open_bi()
                .await
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            let mut bytes = proto::frame::encode(&StreamHello::new(role), MAX_LOGIN_FRAME)
                .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
            bytes.extend(
                proto::frame::encode(request, MAX_LOGIN_FRAME)
                    .map_err(|e| ClientError::BadAnswer(e.to_string()))?,
            );
            send.write_all(&bytes)
                .await
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            send.shutdown()
                .await
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            let mut header = [0u8; proto::frame::HEADER_LEN];
            recv.read_exact(&mut header)
                .await
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            let len = proto::frame::body_len(header, max_answer)
                .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
            // Grows with what arrives rather than trusting the announced length.
            let mut body = Vec::with_capacity(len.min(4096));
            let n = (&mut recv)
                .take(len as u64)
                .read_to_end(&mut body)
                .await
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            if n != len {
                return Err(ClientError::BadAnswer("answer ends mid-frame".into()));
            }
            Ok(body)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| ClientError::TimedOut(REQUEST_TIMEOUT))?
    }

    /// Sends a device's request; an `Error` answer becomes [`ClientError::Server`].
    pub async fn client_request(
        &self,
        request: &ClientToLogin,
    ) -> Result<LoginToClient, ClientError> {
        let body = self
            .exchange(Role::Client, request, MAX_LOGIN_FRAME)
            .await?;
        match login::decode_login_to_client(&body) {
            Ok(LoginToClient::Error(e)) => Err(ClientError::Server(e)),
            Ok(answer) => Ok(answer),
            Err(e) => Err(ClientError::BadAnswer(e.to_string())),
        }
    }

    /// Sends a supernode's request; an `Error` answer becomes [`ClientError::Server`].
    pub async fn supernode_request(
        &self,
        request: &SupernodeToLogin,
    ) -> Result<LoginToSupernode, ClientError> {
        let body = self
            .exchange(Role::Supernode, request, MAX_LOGIN_TO_SUPERNODE_FRAME)
            .await?;
        match login::decode_login_to_supernode(&body) {
            Ok(LoginToSupernode::Error(e)) => Err(ClientError::Server(e)),
            Ok(answer) => Ok(answer),
            Err(e) => Err(ClientError::BadAnswer(e.to_string())),
        }
    }

    // ---- devices ----

    pub async fn register(
        &self,
        user: &UserName,
        display_name: &DisplayName,
        password: &Password,
    ) -> Result<(), ClientError> {
        match self
            .client_request(&ClientToLogin::Register {
                user: user.clone(),
                display_name: display_name.clone(),
                password: password.clone(),
            })
            .await?
        {
            LoginToClient::Registered { .. } => Ok(()),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    /// Logs in; the credential names this endpoint's identity key.
    pub async fn login(
        &self,
        user: &UserName,
        password: &Password,
    ) -> Result<SignedCredential, ClientError> {
        credential_of(
            self.client_request(&ClientToLogin::Login {
                user: user.clone(),
                password: password.clone(),
            })
            .await?,
        )
    }

    pub async fn change_password(
        &self,
        user: &UserName,
        old_password: &Password,
        new_password: &Password,
    ) -> Result<SignedCredential, ClientError> {
        credential_of(
            self.client_request(&ClientToLogin::ChangePassword {
                user: user.clone(),
                old_password: old_password.clone(),
                new_password: new_password.clone(),
            })
            .await?,
        )
    }

    pub async fn delete_account(
        &self,
        user: &UserName,
        password: &Password,
    ) -> Result<(), ClientError> {
        done(
            self.client_request(&ClientToLogin::DeleteAccount {
                user: user.clone(),
                password: password.clone(),
            })
            .await?,
        )
    }

    /// Sends `request` on behalf of the holder of `credential`.
    pub async fn as_user(
        &self,
        credential: &SignedCredential,
        request: UserRequest,
    ) -> Result<LoginToClient, ClientError> {
        self.client_request(&ClientToLogin::AsUser {
            credential: credential.clone(),
            request,
        })
        .await
    }

    pub async fn refresh(
        &self,
        credential: &SignedCredential,
    ) -> Result<SignedCredential, ClientError> {
        credential_of(self.as_user(credential, UserRequest::Refresh).await?)
    }

    /// Changes the display name; the answer is a fresh credential carrying it.
    pub async fn set_display_name(
        &self,
        credential: &SignedCredential,
        display_name: &DisplayName,
    ) -> Result<SignedCredential, ClientError> {
        credential_of(
            self.as_user(
                credential,
                UserRequest::SetDisplayName {
                    display_name: display_name.clone(),
                },
            )
            .await?,
        )
    }

    pub async fn contacts(
        &self,
        credential: &SignedCredential,
    ) -> Result<Vec<Contact>, ClientError> {
        match self.as_user(credential, UserRequest::ListContacts).await? {
            LoginToClient::Contacts { contacts } => Ok(contacts),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    /// A buddy-list change (`AddContact`, `AcceptContact`, ...).
    pub async fn contact_change(
        &self,
        credential: &SignedCredential,
        request: UserRequest,
    ) -> Result<(), ClientError> {
        done(self.as_user(credential, request).await?)
    }

    pub async fn store_offline(
        &self,
        credential: &SignedCredential,
        envelope: Envelope,
    ) -> Result<MessageId, ClientError> {
        match self
            .as_user(credential, UserRequest::StoreOffline { envelope })
            .await?
        {
            LoginToClient::Stored { id } => Ok(id),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    pub async fn fetch_mailbox(
        &self,
        credential: &SignedCredential,
        max: u16,
    ) -> Result<(Vec<Envelope>, bool), ClientError> {
        match self
            .as_user(credential, UserRequest::FetchMailbox { max })
            .await?
        {
            LoginToClient::Mailbox { envelopes, more } => Ok((envelopes, more)),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    pub async fn ack_mailbox(
        &self,
        credential: &SignedCredential,
        ids: Vec<MessageId>,
    ) -> Result<(), ClientError> {
        done(
            self.as_user(credential, UserRequest::AckMailbox { ids })
                .await?,
        )
    }

    pub async fn lookup(
        &self,
        credential: &SignedCredential,
        user: &UserName,
    ) -> Result<Option<UserInfo>, ClientError> {
        match self
            .as_user(credential, UserRequest::Lookup { user: user.clone() })
            .await?
        {
            LoginToClient::User(info) => Ok(info),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    pub async fn search(
        &self,
        credential: &SignedCredential,
        query: &str,
        limit: u16,
    ) -> Result<Vec<UserInfo>, ClientError> {
        match self
            .as_user(
                credential,
                UserRequest::Search {
                    query: query.to_owned(),
                    limit,
                },
            )
            .await?
        {
            LoginToClient::Users(users) => Ok(users),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    pub async fn directory(&self) -> Result<SignedDirectory, ClientError> {
        match self.client_request(&ClientToLogin::FetchDirectory).await? {
            LoginToClient::Directory(d) => Ok(d),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    // ---- supernodes ----

    /// Asks to be admitted with `addrs`; the answer's directory lists this supernode.
    pub async fn admit(&self, addrs: SupernodeAddrs) -> Result<SignedDirectory, ClientError> {
        match self
            .supernode_request(&SupernodeToLogin::Admit { addrs })
            .await?
        {
            LoginToSupernode::Admitted { directory } => Ok(directory),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    /// Heartbeat; `Err(Server(NotAdmitted))` means: admit again.
    pub async fn heartbeat(&self, homed_users: u32) -> Result<(), ClientError> {
        match self
            .supernode_request(&SupernodeToLogin::Heartbeat { homed_users })
            .await?
        {
            LoginToSupernode::Done => Ok(()),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    pub async fn supernode_directory(&self) -> Result<SignedDirectory, ClientError> {
        match self
            .supernode_request(&SupernodeToLogin::FetchDirectory)
            .await?
        {
            LoginToSupernode::Directory(d) => Ok(d),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    /// The revocation list when newer than `known_version`, else `None`.
    pub async fn revocations(
        &self,
        known_version: u64,
    ) -> Result<Option<SignedRevocationList>, ClientError> {
        match self
            .supernode_request(&SupernodeToLogin::FetchRevocations { known_version })
            .await?
        {
            LoginToSupernode::Revocations(list) => Ok(Some(list)),
            LoginToSupernode::RevocationsUnchanged { .. } => Ok(None),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    pub async fn supernode_lookup(&self, user: &UserName) -> Result<Option<UserInfo>, ClientError> {
        match self
            .supernode_request(&SupernodeToLogin::Lookup { user: user.clone() })
            .await?
        {
            LoginToSupernode::User(info) => Ok(info),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    pub async fn supernode_search(
        &self,
        query: &str,
        limit: u16,
    ) -> Result<Vec<UserInfo>, ClientError> {
        match self
            .supernode_request(&SupernodeToLogin::Search {
                query: query.to_owned(),
                limit,
            })
            .await?
        {
            LoginToSupernode::Users(users) => Ok(users),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }

    /// Reports that the holder of `credential` homed on this supernode.
    pub async fn user_homed(&self, credential: &SignedCredential) -> Result<(), ClientError> {
        match self
            .supernode_request(&SupernodeToLogin::UserHomed {
                credential: credential.clone(),
            })
            .await?
        {
            LoginToSupernode::Done => Ok(()),
            _ => Err(ClientError::UnexpectedAnswer),
        }
    }
}

fn credential_of(answer: LoginToClient) -> Result<SignedCredential, ClientError> {
    match answer {
        LoginToClient::LoggedIn { credential } => Ok(credential),
        _ => Err(ClientError::UnexpectedAnswer),
    }
}

fn done(answer: LoginToClient) -> Result<(), ClientError> {
    match answer {
        LoginToClient::Done => Ok(()),
        _ => Err(ClientError::UnexpectedAnswer),
    }
}
