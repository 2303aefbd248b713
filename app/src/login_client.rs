//! The app's side of the login server: register, log in, change the password, keep a
//! valid credential in the profile.
//!
//! Wraps [`login_server::client::LoginConnection`] with the profile (device key, remembered
//! server and user) and turns protocol errors into messages a person can act on.

use crate::profile::{Profile, ProfileError, Settings};
use login_server::client::{ClientError, LoginConnection};
use proto::login::{LoginError, Password};
use proto::{DisplayName, PublicKey, SignedCredential, UnixTime, UserName};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// A stored credential this close to expiry is replaced rather than used.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Where the login server is and which authority key it must prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginTarget {
    pub addr: SocketAddr,
    pub authority: PublicKey,
}

/// Why registering or logging in failed, in terms a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("no login server configured: pass --login-server ADDR and --authority-key KEY")]
    NotConfigured,
    #[error("no user given and none remembered in the profile")]
    NoUser,
    #[error("cannot reach the login server at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("wrong user name or password")]
    WrongPassword,
    #[error("too many attempts; try again in {0} s")]
    Throttled(u32),
    #[error("user name {0} is already taken")]
    NameTaken(UserName),
    #[error("{0}")]
    Refused(LoginError),
    #[error("login server: {0}")]
    Protocol(String),
    #[error("password: {0}")]
    Password(String),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("network: {0}")]
    Network(String),
}

impl From<ClientError> for FlowError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Server(LoginError::InvalidCredentials) => Self::WrongPassword,
            ClientError::Server(LoginError::Throttled { retry_after_secs }) => {
                Self::Throttled(retry_after_secs)
            }
            ClientError::Server(other) => Self::Refused(other),
            ClientError::Unreachable { addr, reason } => Self::Unreachable { addr, reason },
            other => Self::Protocol(other.to_string()),
        }
    }
}

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

/// Resolves the login server from flags (which win) and the profile, and remembers the
/// result in the profile.
pub fn resolve_target(
    profile: &Profile,
    login_server: Option<SocketAddr>,
    authority_key: Option<PublicKey>,
) -> Result<(LoginTarget, Settings), FlowError> {
    let mut settings = profile.settings()?;
    let addr = login_server
        .or(settings.login_server)
        .ok_or(FlowError::NotConfigured)?;
    let authority = authority_key
        .or(settings.authority_key)
        .ok_or(FlowError::NotConfigured)?;
    if settings.login_server != Some(addr) || settings.authority_key != Some(authority) {
        settings.login_server = Some(addr);
        settings.authority_key = Some(authority);
        profile.save_settings(&settings)?;
    }
    Ok((LoginTarget { addr, authority }, settings))
}

/// Dials the login server with this device's identity.
pub async fn connect(
    profile: &Profile,
    target: &LoginTarget,
) -> Result<LoginConnection, FlowError> {
    let key = profile.device_key()?;
    let bind: SocketAddr = if target.addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let endpoint = transport::Endpoint::bind(bind, &key, None)
        .map_err(|e| FlowError::Network(e.to_string()))?;
    Ok(LoginConnection::connect(&endpoint, target.addr, target.authority).await?)
}

/// Creates the account, remembers the user in the profile and logs in.
pub async fn register(
    profile: &Profile,
    target: &LoginTarget,
    user: &UserName,
    display_name: &DisplayName,
    password: &Password,
) -> Result<SignedCredential, FlowError> {
    let conn = connect(profile, target).await?;
    match conn.register(user, display_name, password).await {
        Ok(()) => {}
        Err(ClientError::Server(LoginError::UserNameTaken)) => {
            return Err(FlowError::NameTaken(user.clone()));
        }
        Err(e) => return Err(e.into()),
    }
    let mut settings = profile.settings()?;
    settings.user = Some(user.clone());
    profile.save_settings(&settings)?;
    let credential = conn.login(user, password).await?;
    profile.save_credential(&credential)?;
    conn.close();
    Ok(credential)
}

/// Logs `user` in and keeps the credential (and the user) in the profile.
pub async fn login(
    profile: &Profile,
    target: &LoginTarget,
    user: &UserName,
    password: &Password,
) -> Result<SignedCredential, FlowError> {
    let conn = connect(profile, target).await?;
    let credential = conn.login(user, password).await?;
    credential
        .verify_for_key(&target.authority, now(), &profile.device_key()?.public())
        .map_err(|e| FlowError::Protocol(format!("issued an unusable credential: {e}")))?;
    profile.save_credential(&credential)?;
    let mut settings = profile.settings()?;
    if settings.user.as_ref() != Some(user) {
        settings.user = Some(user.clone());
        profile.save_settings(&settings)?;
    }
    conn.close();
    Ok(credential)
}

/// Changes `user`'s password at the login server. The server revokes every credential the
/// user holds and issues a fresh one for this device, which is kept in the profile and
/// returned (running sessions must restart with it).
pub async fn change_password(
    profile: &Profile,
    target: &LoginTarget,
    user: &UserName,
    old_password: &Password,
    new_password: &Password,
) -> Result<SignedCredential, FlowError> {
    new_password
        .check_new()
        .map_err(|e| FlowError::Password(e.to_string()))?;
    let conn = connect(profile, target).await?;
    let credential = conn
        .change_password(user, old_password, new_password)
        .await?;
    credential
        .verify_for_key(&target.authority, now(), &profile.device_key()?.public())
        .map_err(|e| FlowError::Protocol(format!("issued an unusable credential: {e}")))?;
    profile.save_credential(&credential)?;
    conn.close();
    Ok(credential)
}

/// Changes the display name of the holder of `credential` at the login server (the rules
/// are [`DisplayName`]'s, checked when it was made). The server answers with a fresh
/// credential carrying the new name; it is kept in the profile and returned (a running
/// engine adopts it with [`crate::engine::EngineHandle::adopt_credential`]).
pub async fn set_display_name(
    profile: &Profile,
    target: &LoginTarget,
    credential: &SignedCredential,
    display_name: &DisplayName,
) -> Result<SignedCredential, FlowError> {
    let conn = connect(profile, target).await?;
    let fresh = conn.set_display_name(credential, display_name).await?;
    let claims = fresh
        .verify_for_key(&target.authority, now(), &profile.device_key()?.public())
        .map_err(|e| FlowError::Protocol(format!("issued an unusable credential: {e}")))?;
    if claims.display_name != *display_name {
        return Err(FlowError::Protocol(
            "the new credential does not carry the new display name".into(),
        ));
    }
    profile.save_credential(&fresh)?;
    conn.close();
    Ok(fresh)
}

/// A valid credential for the profile's user: the stored one, else a fresh login with the
/// password `ask_password` supplies (for commands that need the network).
pub async fn ensure_credential(
    profile: &Profile,
    target: &LoginTarget,
    ask_password: impl FnOnce() -> Result<Password, FlowError>,
) -> Result<(UserName, SignedCredential), FlowError> {
    let user = profile.settings()?.user.ok_or(FlowError::NoUser)?;
    if let Some(credential) =
        profile.valid_credential(&target.authority, &user, now(), REFRESH_MARGIN)?
    {
        return Ok((user, credential));
    }
    let password = ask_password()?;
    let credential = login(profile, target, &user, &password).await?;
    Ok((user, credential))
}
