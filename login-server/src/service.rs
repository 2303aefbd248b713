//! What the login server does with one decoded request: authentication, throttling,
//! storage, signing. Transport-free, so tests drive it directly.
//!
//! Every method takes the peer as TLS proved it ([`Peer`]) and returns the typed answer;
//! failures on the server's side become [`LoginError::Internal`] after being logged.

use crate::core::admission::AdmissionPolicy;
use crate::core::throttle::{Millis, ThrottlePolicy};
use crate::password::Hasher;
use crate::storage::{ContactOp, ContactOutcome, MailboxLimits, Store, StoreError, StoreOutcome};
use proto::credential::{Credential, RevocationList, SignedRevocationList};
use proto::directory::{DIRECTORY_LIFETIME, Directory, MAX_DIRECTORY_ENTRIES, SignedDirectory};
use proto::login::{
    ClientToLogin, LoginError, LoginToClient, LoginToSupernode, MAX_LOOKUP_CREDENTIALS,
    MAX_MAILBOX_BATCH, MAX_SEARCH_RESULTS, Password, SUPERNODE_STALE_SECS, SupernodeToLogin,
    UserRequest,
};
use proto::{DisplayName, PublicKey, SecretKey, SignedCredential, UnixTime, UserName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Who sent a request, as the TLS handshake and the socket tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub key: PublicKey,
    pub addr: SocketAddr,
}

/// The wall clock as milliseconds since the Unix epoch; replaceable in tests.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

/// Policy knobs of the service.
#[derive(Clone)]
pub struct ServiceConfig {
    pub credential_lifetime: Duration,
    pub admission: AdmissionPolicy,
    pub registrations_per_hour: u32,
    pub mailbox: MailboxLimits,
    /// Argon2 hashes running at once.
    pub hash_parallelism: usize,
    pub clock: Clock,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("credential_lifetime", &self.credential_lifetime)
            .field("admission", &self.admission)
            .field("registrations_per_hour", &self.registrations_per_hour)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            credential_lifetime: proto::credential::DEFAULT_CREDENTIAL_LIFETIME,
            admission: AdmissionPolicy::default(),
            registrations_per_hour: 10,
            mailbox: MailboxLimits::default(),
            hash_parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            clock: system_clock(),
        }
    }
}

/// The login service. Cheap to clone; holds no per-process state that other processes
/// sharing the database would need to see.
#[derive(Clone)]
pub struct LoginService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    authority: SecretKey,
    hasher: Hasher,
    config: ServiceConfig,
}

impl std::fmt::Debug for LoginService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginService")
            .field("authority", &self.inner.authority.public())
            .finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> LoginError {
    tracing::error!(error = %e, "request failed on the server side");
    LoginError::Internal
}

impl From<StoreError> for LoginError {
    fn from(e: StoreError) -> Self {
        internal(e)
    }
}

impl From<crate::password::HashError> for LoginError {
    fn from(e: crate::password::HashError) -> Self {
        internal(e)
    }
}

/// Labels for metrics: which request a stream carried.
pub fn client_request_kind(request: &ClientToLogin) -> &'static str {
    match request {
        ClientToLogin::Register { .. } => "register",
        ClientToLogin::Login { .. } => "login",
        ClientToLogin::ChangePassword { .. } => "change_password",
        ClientToLogin::DeleteAccount { .. } => "delete_account",
        ClientToLogin::FetchDirectory => "directory",
        ClientToLogin::AsUser { request, .. } => match request {
            UserRequest::Refresh => "refresh",
            UserRequest::ListContacts => "contacts_list",
            UserRequest::AddContact { .. }
            | UserRequest::AcceptContact { .. }
            | UserRequest::DeclineContact { .. }
            | UserRequest::RemoveContact { .. }
            | UserRequest::BlockContact { .. }
            | UserRequest::UnblockContact { .. } => "contacts_change",
            UserRequest::StoreOffline { .. } => "mailbox_store",
            UserRequest::FetchMailbox { .. } => "mailbox_fetch",
            UserRequest::AckMailbox { .. } => "mailbox_ack",
            UserRequest::Lookup { .. } => "lookup",
            UserRequest::Search { .. } => "search",
            UserRequest::SetDisplayName { .. } => "display_name",
        },
    }
}

/// Labels for metrics: which request a supernode stream carried.
pub fn supernode_request_kind(request: &SupernodeToLogin) -> &'static str {
    match request {
        SupernodeToLogin::Admit { .. } => "sn_admit",
        SupernodeToLogin::Heartbeat { .. } => "sn_heartbeat",
        SupernodeToLogin::FetchDirectory => "sn_directory",
        SupernodeToLogin::FetchRevocations { .. } => "sn_revocations",
        SupernodeToLogin::Lookup { .. } => "sn_lookup",
        SupernodeToLogin::Search { .. } => "sn_search",
        SupernodeToLogin::UserHomed { .. } => "sn_homed",
    }
}

/// Revocation lists carry at most this many entries (the newest).
const MAX_REVOCATIONS: i64 = 60_000;

impl LoginService {
    pub fn new(
        store: Store,
        authority: SecretKey,
        config: ServiceConfig,
    ) -> Result<Self, LoginError> {
        let hasher = Hasher::new(config.hash_parallelism)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                authority,
                hasher,
                config,
            }),
        })
    }

    pub fn authority_key(&self) -> PublicKey {
        self.inner.authority.public()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn now_millis(&self) -> Millis {
        (self.inner.config.clock)()
    }

    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.now_millis() / 1000)
    }

    fn stale(&self) -> Duration {
        Duration::from_secs(SUPERNODE_STALE_SECS)
    }

    /// Answers a device's request.
    pub async fn handle_client(&self, peer: &Peer, request: ClientToLogin) -> LoginToClient {
        let result = match request {
            ClientToLogin::Register {
                user,
                display_name,
                password,
            } => self.register(peer, &user, &display_name, &password).await,
            ClientToLogin::Login { user, password } => self
                .login(peer, &user, &password)
                .await
                .map(|credential| LoginToClient::LoggedIn { credential }),
            ClientToLogin::ChangePassword {
                user,
                old_password,
                new_password,
            } => {
                self.change_password(peer, &user, &old_password, &new_password)
                    .await
            }
            ClientToLogin::DeleteAccount { user, password } => {
                self.delete_account(peer, &user, &password).await
            }
            ClientToLogin::AsUser {
                credential,
                request,
            } => self.as_user(peer, &credential, request).await,
            ClientToLogin::FetchDirectory => self.directory().await.map(LoginToClient::Directory),
        };
        result.unwrap_or_else(LoginToClient::Error)
    }

    async fn register(
        &self,
        peer: &Peer,
        user: &UserName,
        display_name: &DisplayName,
        password: &Password,
    ) -> Result<LoginToClient, LoginError> {
        password
            .check_new()
            .map_err(|e| LoginError::WeakPassword(e.to_string()))?;
        let key = format!("reg:{}", peer.addr.ip());
        let policy = ThrottlePolicy::registrations(self.inner.config.registrations_per_hour);
        if let Err(retry) = self
            .inner
            .store
            .throttle_attempt(&[(&key, policy)], self.now_millis())
            .await?
        {
            metrics::counter!("login_throttled_total", "kind" => "registration").increment(1);
            return Err(LoginError::Throttled {
                retry_after_secs: retry.secs(),
            });
        }
        let hash = self.inner.hasher.hash(password.expose()).await?;
        if !self
            .inner
            .store
            .create_user(user, display_name, &hash, self.now())
            .await?
        {
            return Err(LoginError::UserNameTaken);
        }
        metrics::counter!("login_registrations_total").increment(1);
        tracing::debug!(%user, "registered");
        Ok(LoginToClient::Registered { user: user.clone() })
    }

    /// Checks `user`'s password under throttling. An unknown user and a wrong password
    /// take the same path and return the same error.
    async fn authenticate(
        &self,
        peer: &Peer,
        user: &UserName,
        password: &Password,
    ) -> Result<DisplayName, LoginError> {
        let account_key = format!("acct:{user}");
        let address_key = format!("addr:{}", peer.addr.ip());
        let keys = [
            (account_key.as_str(), ThrottlePolicy::ACCOUNT),
            (address_key.as_str(), ThrottlePolicy::ADDRESS),
        ];
        if let Err(retry) = self
            .inner
            .store
            .throttle_attempt(&keys, self.now_millis())
            .await?
        {
            metrics::counter!("login_throttled_total", "kind" => "password").increment(1);
            return Err(LoginError::Throttled {
                retry_after_secs: retry.secs(),
            });
        }
        let record = self.inner.store.user(user).await?;
        let ok = self
            .inner
            .hasher
            .verify(
                password.expose(),
                record.as_ref().map(|r| r.password_hash.as_str()),
            )
            .await?;
        match record {
            Some(record) if ok => {
                self.inner
                    .store
                    .throttle_forgive(&[
                        (account_key.as_str(), true),
                        (address_key.as_str(), false),
                    ])
                    .await?;
                Ok(record.display_name)
            }
            _ => {
                metrics::counter!("login_failures_total").increment(1);
                Err(LoginError::InvalidCredentials)
            }
        }
    }

    fn issue(
        &self,
        user: &UserName,
        display_name: &DisplayName,
        device_key: PublicKey,
    ) -> (Credential, SignedCredential) {
        let now = self.now();
        let claims = Credential {
            serial: rand::random::<u64>() & (i64::MAX as u64),
            user: user.clone(),
            display_name: display_name.clone(),
            device_key,
            issued_at: now,
            expires_at: now.saturating_add(self.inner.config.credential_lifetime),
        };
        let signed = SignedCredential::issue(&claims, &self.inner.authority);
        (claims, signed)
    }

    async fn issue_and_record(
        &self,
        user: &UserName,
        display_name: &DisplayName,
        device_key: PublicKey,
    ) -> Result<SignedCredential, LoginError> {
        let (claims, signed) = self.issue(user, display_name, device_key);
        self.inner
            .store
            .record_credential(
                claims.serial,
                user,
                &device_key,
                claims.issued_at,
                claims.expires_at,
                &signed,
            )
            .await?;
        Ok(signed)
    }

    /// Logs `user` in on the device that `peer` proved, returning its credential.
    pub async fn login(
        &self,
        peer: &Peer,
        user: &UserName,
        password: &Password,
    ) -> Result<SignedCredential, LoginError> {
        let display_name = self.authenticate(peer, user, password).await?;
        let credential = self.issue_and_record(user, &display_name, peer.key).await?;
        metrics::counter!("login_logins_total").increment(1);
        Ok(credential)
    }

    async fn change_password(
        &self,
        peer: &Peer,
        user: &UserName,
        old: &Password,
        new: &Password,
    ) -> Result<LoginToClient, LoginError> {
        new.check_new()
            .map_err(|e| LoginError::WeakPassword(e.to_string()))?;
        let display_name = self.authenticate(peer, user, old).await?;
        let hash = self.inner.hasher.hash(new.expose()).await?;
        let (claims, credential) = self.issue(user, &display_name, peer.key);
        self.inner
            .store
            .change_password(
                user,
                &hash,
                claims.issued_at,
                claims.serial,
                &peer.key,
                claims.expires_at,
                &credential,
            )
            .await?;
        Ok(LoginToClient::LoggedIn { credential })
    }

    async fn delete_account(
        &self,
        peer: &Peer,
        user: &UserName,
        password: &Password,
    ) -> Result<LoginToClient, LoginError> {
        self.authenticate(peer, user, password).await?;
        self.inner.store.delete_user(user, self.now()).await?;
        Ok(LoginToClient::Done)
    }

    /// Checks a credential presented by `peer`: signed, unexpired, for the TLS key, not
    /// revoked, account still there.
    pub async fn check_credential(
        &self,
        peer: &Peer,
        credential: &SignedCredential,
    ) -> Result<Credential, LoginError> {
        let claims = credential
            .verify_for_key(&self.authority_key(), self.now(), &peer.key)
            .map_err(|e| LoginError::NotAuthenticated(e.to_string()))?;
        if !self
            .inner
            .store
            .credential_is_live(claims.serial, &claims.user)
            .await?
        {
            return Err(LoginError::NotAuthenticated(
                "credential has been revoked".into(),
            ));
        }
        Ok(claims)
    }

    async fn as_user(
        &self,
        peer: &Peer,
        credential: &SignedCredential,
        request: UserRequest,
    ) -> Result<LoginToClient, LoginError> {
        let me = self.check_credential(peer, credential).await?;
        let store = &self.inner.store;
        let now = self.now();
        match request {
            UserRequest::Refresh => {
                let record = store
                    .user(&me.user)
                    .await?
                    .ok_or(LoginError::NotAuthenticated(
                        "account no longer exists".into(),
                    ))?;
                let credential = self
                    .issue_and_record(&me.user, &record.display_name, peer.key)
                    .await?;
                Ok(LoginToClient::LoggedIn { credential })
            }
            UserRequest::ListContacts => Ok(LoginToClient::Contacts {
                contacts: store.contacts(&me.user).await?,
            }),
            UserRequest::AddContact { user } => {
                self.contact(ContactOp::Add, &me.user, &user, now).await
            }
            UserRequest::AcceptContact { user } => {
                self.contact(ContactOp::Accept, &me.user, &user, now).await
            }
            UserRequest::DeclineContact { user } => {
                self.contact(ContactOp::Decline, &me.user, &user, now).await
            }
            UserRequest::RemoveContact { user } => {
                self.contact(ContactOp::Remove, &me.user, &user, now).await
            }
            UserRequest::BlockContact { user } => {
                self.contact(ContactOp::Block, &me.user, &user, now).await
            }
            UserRequest::UnblockContact { user } => {
                self.contact(ContactOp::Unblock, &me.user, &user, now).await
            }
            UserRequest::StoreOffline { envelope } => {
                if envelope.from != me.user {
                    return Err(LoginError::NotAllowed);
                }
                if envelope.sealed.len() > proto::login::MAX_SEALED_BYTES {
                    return Err(LoginError::TooLarge);
                }
                match store
                    .store_envelope(&envelope, now, &self.inner.config.mailbox)
                    .await?
                {
                    StoreOutcome::Stored => Ok(LoginToClient::Stored { id: envelope.id }),
                    StoreOutcome::NoSuchUser => Err(LoginError::NoSuchUser),
                    StoreOutcome::MailboxFull => Err(LoginError::MailboxFull),
                }
            }
            UserRequest::FetchMailbox { max } => {
                let max = usize::from(max).clamp(1, MAX_MAILBOX_BATCH);
                let (envelopes, more) = store
                    .fetch_mailbox(&me.user, max, now, &self.inner.config.mailbox)
                    .await?;
                Ok(LoginToClient::Mailbox { envelopes, more })
            }
            UserRequest::AckMailbox { ids } => {
                if ids.len() > MAX_MAILBOX_BATCH {
                    return Err(LoginError::TooLarge);
                }
                store.ack_mailbox(&me.user, &ids).await?;
                Ok(LoginToClient::Done)
            }
            UserRequest::Lookup { user } => Ok(LoginToClient::User(self.lookup(&user).await?)),
            UserRequest::Search { query, limit } => {
                Ok(LoginToClient::Users(self.search(&query, limit).await?))
            }
            UserRequest::SetDisplayName { display_name } => {
                self.set_display_name(peer, &me.user, &display_name).await
            }
        }
    }

    /// Renames `user` (the name was validated when the request was decoded) and answers
    /// with a fresh credential carrying the new name. Every change counts against a
    /// per-account budget, as registrations do per address, so a stolen credential cannot
    /// churn the search index.
    async fn set_display_name(
        &self,
        peer: &Peer,
        user: &UserName,
        display_name: &DisplayName,
    ) -> Result<LoginToClient, LoginError> {
        let key = format!("dname:{user}");
        if let Err(retry) = self
            .inner
            .store
            .throttle_attempt(
                &[(&key, ThrottlePolicy::DISPLAY_NAME_CHANGES)],
                self.now_millis(),
            )
            .await?
        {
            metrics::counter!("login_throttled_total", "kind" => "display_name").increment(1);
            return Err(LoginError::Throttled {
                retry_after_secs: retry.secs(),
            });
        }
        if !self
            .inner
            .store
            .set_display_name(user, display_name)
            .await?
        {
            return Err(LoginError::NotAuthenticated(
                "account no longer exists".into(),
            ));
        }
        let credential = self.issue_and_record(user, display_name, peer.key).await?;
        tracing::debug!(%user, "display name changed");
        Ok(LoginToClient::LoggedIn { credential })
    }

    async fn contact(
        &self,
        op: ContactOp,
        me: &UserName,
        other: &UserName,
        now: UnixTime,
    ) -> Result<LoginToClient, LoginError> {
        match self.inner.store.contact_op(op, me, other, now).await? {
            ContactOutcome::Done => Ok(LoginToClient::Done),
            ContactOutcome::NoSuchUser => Err(LoginError::NoSuchUser),
            ContactOutcome::NotAllowed => Err(LoginError::NotAllowed),
        }
    }

    /// What the directory of live supernodes says now, signed.
    pub async fn directory(&self) -> Result<SignedDirectory, LoginError> {
        let now_millis = self.now_millis();
        let now = UnixTime::from_secs(now_millis / 1000);
        let live = self
            .inner
            .store
            .live_supernodes(now, self.stale(), MAX_DIRECTORY_ENTRIES)
            .await?;
        let directory = Directory {
            // Issue time in milliseconds: increases across processes sharing a database
            // as far as their clocks agree, without a shared counter.
            version: now_millis,
            issued_at: now,
            expires_at: now.saturating_add(DIRECTORY_LIFETIME),
            entries: live.into_iter().map(|r| r.entry).collect(),
        };
        Ok(SignedDirectory::issue(&directory, &self.inner.authority))
    }

    /// The signed revocation list.
    pub async fn revocations(&self) -> Result<SignedRevocationList, LoginError> {
        let now = self.now();
        let (version, revoked) = self.inner.store.revocations(now, MAX_REVOCATIONS).await?;
        let list = RevocationList {
            version,
            issued_at: now,
            revoked,
        };
        Ok(SignedRevocationList::issue(&list, &self.inner.authority))
    }

    /// A user by exact name.
    pub async fn lookup(
        &self,
        user: &UserName,
    ) -> Result<Option<proto::login::UserInfo>, LoginError> {
        let max = i64::try_from(MAX_LOOKUP_CREDENTIALS).unwrap_or(8);
        Ok(self.inner.store.lookup(user, self.now(), max).await?)
    }

    /// Exact user name or display-name prefix.
    pub async fn search(
        &self,
        query: &str,
        limit: u16,
    ) -> Result<Vec<proto::login::UserInfo>, LoginError> {
        let limit = usize::from(limit).clamp(1, MAX_SEARCH_RESULTS);
        if query.chars().count() > proto::login::MAX_SEARCH_PREFIX_CHARS {
            return Err(LoginError::TooLarge);
        }
        Ok(self.inner.store.search(query, limit, self.now()).await?)
    }

    async fn require_admitted(&self, peer: &Peer) -> Result<(), LoginError> {
        let live = self
            .inner
            .store
            .live_supernodes(self.now(), self.stale(), MAX_DIRECTORY_ENTRIES)
            .await?;
        if live.iter().any(|r| r.entry.key == peer.key) {
            Ok(())
        } else {
            Err(LoginError::NotAdmitted("admit first".into()))
        }
    }

    /// Answers a supernode's request.
    pub async fn handle_supernode(
        &self,
        peer: &Peer,
        request: SupernodeToLogin,
    ) -> LoginToSupernode {
        self.supernode_request(peer, request)
            .await
            .unwrap_or_else(LoginToSupernode::Error)
    }

    async fn supernode_request(
        &self,
        peer: &Peer,
        request: SupernodeToLogin,
    ) -> Result<LoginToSupernode, LoginError> {
        let store = &self.inner.store;
        let now = self.now();
        match request {
            SupernodeToLogin::Admit { addrs } => {
                let source = peer.addr.ip();
                let others = store
                    .live_supernodes_from(source, &peer.key, now, self.stale())
                    .await?;
                self.inner
                    .config
                    .admission
                    .decide(&peer.key, source, &addrs, others)
                    .map_err(|e| LoginError::NotAdmitted(e.to_string()))?;
                store
                    .upsert_supernode(&peer.key, &addrs, source, now, self.stale())
                    .await?;
                tracing::info!(supernode = %peer.key, quic = %addrs.quic, "supernode admitted");
                Ok(LoginToSupernode::Admitted {
                    directory: self.directory().await?,
                })
            }
            SupernodeToLogin::Heartbeat { homed_users } => {
                if store
                    .heartbeat(&peer.key, homed_users, now, self.stale())
                    .await?
                {
                    Ok(LoginToSupernode::Done)
                } else {
                    Err(LoginError::NotAdmitted(
                        "unknown or stale; admit again".into(),
                    ))
                }
            }
            SupernodeToLogin::FetchDirectory => {
                Ok(LoginToSupernode::Directory(self.directory().await?))
            }
            SupernodeToLogin::FetchRevocations { known_version } => {
                let version = store.revocation_version().await?;
                if version == known_version {
                    Ok(LoginToSupernode::RevocationsUnchanged { version })
                } else {
                    Ok(LoginToSupernode::Revocations(self.revocations().await?))
                }
            }
            SupernodeToLogin::Lookup { user } => {
                self.require_admitted(peer).await?;
                Ok(LoginToSupernode::User(self.lookup(&user).await?))
            }
            SupernodeToLogin::Search { query, limit } => {
                self.require_admitted(peer).await?;
                Ok(LoginToSupernode::Users(self.search(&query, limit).await?))
            }
            SupernodeToLogin::UserHomed { credential } => {
                self.require_admitted(peer).await?;
                let claims = credential
                    .verify(&self.authority_key(), now)
                    .map_err(|e| LoginError::NotAuthenticated(e.to_string()))?;
                if !store
                    .credential_is_live(claims.serial, &claims.user)
                    .await?
                {
                    return Err(LoginError::NotAuthenticated(
                        "credential has been revoked".into(),
                    ));
                }
                store.set_home(&claims.user, &peer.key, now).await?;
                Ok(LoginToSupernode::Done)
            }
        }
    }

    /// Periodic housekeeping: expiry of envelopes, credentials and throttle records;
    /// refreshes the mailbox-depth gauge.
    pub async fn housekeeping(&self) -> Result<(), StoreError> {
        let expired = self
            .inner
            .store
            .expire(self.now(), &self.inner.config.mailbox)
            .await?;
        metrics::counter!("login_mailbox_expired_total").increment(expired);
        let depth = self.inner.store.mailbox_depth().await?;
        metrics::gauge!("login_mailbox_depth").set(depth as f64);
        Ok(())
    }
}
