//! The supernode's side of the login-server protocol: admission, heartbeats, the signed
//! directory, revocations and user lookups, over one QUIC connection pinned to the
//! authority key. One request per stream: `StreamHello`, request, one answer.

use proto::credential::SignedRevocationList;
use proto::directory::{SignedDirectory, SupernodeAddrs};
use proto::login::{
    self, LoginError, LoginToSupernode, MAX_LOGIN_FRAME, MAX_LOGIN_TO_SUPERNODE_FRAME, Role,
    StreamHello, SupernodeToLogin, UserInfo,
};
use proto::{PublicKey, SignedCredential, UserName};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use transport::{Conn, Endpoint, PeerPolicy, Tuning};

/// How long one request may take.
pub const LOGIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to the login server failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginClientError {
    #[error("login server refused: {0}")]
    Server(LoginError),
    #[error("cannot reach the login server: {0}")]
    Unreachable(String),
    #[error("connection to the login server failed: {0}")]
    Connection(String),
    #[error("malformed answer from the login server: {0}")]
    BadAnswer(String),
    #[error("unexpected answer from the login server")]
    Unexpected,
    #[error("the login server did not answer in time")]
    TimedOut,
}

/// A connection to the login server.
#[derive(Clone)]
pub struct LoginLink {
    conn: Conn,
}

impl LoginLink {
    pub async fn connect(
        endpoint: &Endpoint,
        addr: SocketAddr,
        authority: PublicKey,
    ) -> Result<Self, LoginClientError> {
        let conn = endpoint
            .connect(addr, PeerPolicy::Key(authority), &Tuning::client())
            .await
            .map_err(|e| LoginClientError::Unreachable(e.to_string()))?;
        Ok(Self { conn })
    }

    /// Whether the connection is still usable.
    pub fn is_open(&self) -> bool {
        self.conn
            .as_quic()
            .is_none_or(|c| c.close_reason().is_none())
    }

    pub fn close(&self) {
        self.conn.close(0, "shutting down");
    }

    async fn request(
        &self,
        request: &SupernodeToLogin,
    ) -> Result<LoginToSupernode, LoginClientError> {
        let work = async {
            let conn_err = |e: std::io::Error| LoginClientError::Connection(e.to_string());
            let (mut send, mut recv) = self
                .conn
                .open_bi()
                .await
                .map_err(|e| LoginClientError::Connection(e.to_string()))?;
            let mut bytes =
                proto::frame::encode(&StreamHello::new(Role::Supernode), MAX_LOGIN_FRAME)
                    .map_err(|e| LoginClientError::BadAnswer(e.to_string()))?;
            bytes.extend(
                proto::frame::encode(request, MAX_LOGIN_FRAME)
                    .map_err(|e| LoginClientError::BadAnswer(e.to_string()))?,
            );
            send.write_all(&bytes).await.map_err(conn_err)?;
            send.shutdown().await.map_err(conn_err)?;
            let mut header = [0u8; proto::frame::HEADER_LEN];
            recv.read_exact(&mut header).await.map_err(conn_err)?;
            let len = proto::frame::body_len(header, MAX_LOGIN_TO_SUPERNODE_FRAME)
                .map_err(|e| LoginClientError::BadAnswer(e.to_string()))?;
            let mut body = vec![0u8; len];
            recv.read_exact(&mut body).await.map_err(conn_err)?;
            match login::decode_login_to_supernode(&body) {
                Ok(LoginToSupernode::Error(e)) => Err(LoginClientError::Server(e)),
                Ok(answer) => Ok(answer),
                Err(e) => Err(LoginClientError::BadAnswer(e.to_string())),
            }
        };
        tokio::time::timeout(LOGIN_REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| LoginClientError::TimedOut)?
    }

    pub async fn admit(&self, addrs: SupernodeAddrs) -> Result<SignedDirectory, LoginClientError> {
        match self.request(&SupernodeToLogin::Admit { addrs }).await? {
            LoginToSupernode::Admitted { directory } => Ok(directory),
            _ => Err(LoginClientError::Unexpected),
        }
    }

    pub async fn heartbeat(&self, homed_users: u32) -> Result<(), LoginClientError> {
        match self
            .request(&SupernodeToLogin::Heartbeat { homed_users })
            .await?
        {
            LoginToSupernode::Done => Ok(()),
            _ => Err(LoginClientError::Unexpected),
        }
    }

    pub async fn directory(&self) -> Result<SignedDirectory, LoginClientError> {
        match self.request(&SupernodeToLogin::FetchDirectory).await? {
            LoginToSupernode::Directory(d) => Ok(d),
            _ => Err(LoginClientError::Unexpected),
        }
    }

    pub async fn revocations(
        &self,
        known_version: u64,
    ) -> Result<Option<SignedRevocationList>, LoginClientError> {
        match self
            .request(&SupernodeToLogin::FetchRevocations { known_version })
            .await?
        {
            LoginToSupernode::Revocations(list) => Ok(Some(list)),
            LoginToSupernode::RevocationsUnchanged { .. } => Ok(None),
            _ => Err(LoginClientError::Unexpected),
        }
    }

    pub async fn lookup(&self, user: &UserName) -> Result<Option<UserInfo>, LoginClientError> {
        match self
            .request(&SupernodeToLogin::Lookup { user: user.clone() })
            .await?
        {
            LoginToSupernode::User(info) => Ok(info),
            _ => Err(LoginClientError::Unexpected),
        }
    }

    pub async fn search(&self, query: &str, limit: u16) -> Result<Vec<UserInfo>, LoginClientError> {
        match self
            .request(&SupernodeToLogin::Search {
                query: query.to_owned(),
                limit,
            })
            .await?
        {
            LoginToSupernode::Users(users) => Ok(users),
            _ => Err(LoginClientError::Unexpected),
        }
    }

    pub async fn user_homed(&self, credential: &SignedCredential) -> Result<(), LoginClientError> {
        match self
            .request(&SupernodeToLogin::UserHomed {
                credential: credential.clone(),
            })
            .await?
        {
            LoginToSupernode::Done => Ok(()),
            _ => Err(LoginClientError::Unexpected),
        }
    }
}
