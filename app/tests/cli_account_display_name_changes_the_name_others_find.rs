//! `peerphone account display-name NAME` with the profile's stored credential: the login
//! server's search finds the user by the new name, and the profile keeps a credential
//! carrying it.

use app::cli::{AccountCommand, Command, LogFormat, Options};
use app::local::{LocalNetwork, LocalOptions};
use app::login_client;
use app::profile::Profile;
use proto::login::Password;
use proto::{DisplayName, UserName};

fn user(name: &str) -> UserName {
    name.parse().expect("valid user name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_display_name_changes_the_name_others_find() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = LocalOptions::new(1);
    options.fixed_ports = false;
    let network = LocalNetwork::start_with(&dir.path().join("net"), options)
        .await
        .expect("local network");
    let target = network.target();
    let password = Password::new("a long enough password").expect("password");
    let mut credentials = Vec::new();
    for name in ["carol", "dave"] {
        let profile = Profile::open(dir.path().join(name)).expect("profile");
        credentials.push(
            login_client::register(
                &profile,
                &target,
                &user(name),
                &DisplayName::new(name).expect("display name"),
                &password,
            )
            .await
            .expect("register"),
        );
    }

    let options = Options {
        profile_dir: dir.path().join("carol"),
        login_server: Some(target.addr),
        authority_key: Some(target.authority),
        json: true,
        log_format: LogFormat::Json,
    };
    app::cli::run(
        Command::Account(AccountCommand::DisplayName {
            display_name: DisplayName::new("Carol Quill").expect("display name"),
        }),
        &options,
    )
    .await
    .expect("display-name command");

    let carol = Profile::open(dir.path().join("carol")).expect("profile");
    let stored = carol
        .valid_credential(
            &target.authority,
            &user("carol"),
            proto::UnixTime::from_system(std::time::SystemTime::now()),
            std::time::Duration::ZERO,
        )
        .expect("profile")
        .expect("a stored credential");
    assert_eq!(
        stored
            .claims_unverified()
            .expect("claims")
            .display_name
            .as_str(),
        "Carol Quill"
    );

    let dave_profile = Profile::open(dir.path().join("dave")).expect("profile");
    let conn = login_client::connect(&dave_profile, &target)
        .await
        .expect("connect");
    let found = conn
        .search(&credentials[1], "carol q", 10)
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].user, user("carol"));
    assert_eq!(found[0].display_name.as_str(), "Carol Quill");
    conn.close();
    network.shutdown().await;
}
