//! A user changes their display name: fresh credential, search, lookup, buddy lists and the
//! next login show the new name; changes are throttled. On SQLite here; the PostgreSQL run
//! is in `storage_on_postgres.rs`.

mod support;
use support::scenarios;

#[tokio::test]
async fn display_name_change_reaches_search_and_credentials_on_sqlite() {
    scenarios::display_name_change(None).await;
}
