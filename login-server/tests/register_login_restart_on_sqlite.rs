//! Register, log in, restart, log in again; password change revokes; on SQLite.

mod support;
use support::scenarios;

#[tokio::test]
async fn register_login_restart_login_on_sqlite() {
    scenarios::register_login_restart(None).await;
}

#[tokio::test]
async fn password_change_revokes_old_credentials_on_sqlite() {
    scenarios::password_change_revokes(None).await;
}

#[tokio::test]
async fn search_contacts_and_mailbox_on_sqlite() {
    scenarios::search_contacts_mailbox(None).await;
}
