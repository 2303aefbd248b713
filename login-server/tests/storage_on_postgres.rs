//! The same scenarios on PostgreSQL, including two servers sharing one database.
//!
//! Uses `PEERPHONE_TEST_POSTGRES` (a URL of a maintenance database with the right to
//! create databases) when set, else starts a throwaway cluster; skips loudly when neither
//! works.

mod support;
use support::scenarios;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_server_works_on_postgres() {
    let Some(pg) = support::Postgres::get() else {
        return;
    };
    scenarios::register_login_restart(Some(pg.database().await)).await;
    scenarios::password_change_revokes(Some(pg.database().await)).await;
    scenarios::search_contacts_mailbox(Some(pg.database().await)).await;
    scenarios::display_name_change(Some(pg.database().await)).await;
    scenarios::two_servers_share_one_database(pg.database().await).await;
}
