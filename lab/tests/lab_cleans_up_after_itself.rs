//! Labs leave nothing behind: namespaces and the processes in them go when a lab drops,
//! also when the test panics; leftovers of dead processes are swept; two labs of one
//! process do not touch each other. Root only (prints SKIP otherwise).

use std::process::Command;
use std::time::Duration;

use lab::{Behind, Lab, NatKind};

fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn with_prefix(prefix: &str) -> Vec<String> {
    namespaces()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn alive(pid: u32) -> bool {
    // A killed child of a dead parent may linger as a zombie for a moment; count only
    // processes that are not zombies.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn a_panicking_test_still_removes_its_namespaces_and_processes() {
    if !lab::require_root("lab_cleans_up_after_itself::panic") {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let mut lab = Lab::new("panics").expect("lab");
        let client = lab
            .client("client", Behind::Nat(NatKind::PortRestricted))
            .expect("client");
        // A process that would run forever, started outside any LabProcess handle.
        let mut child = client
            .host
            .command("sleep")
            .arg("600")
            .spawn()
            .expect("sleep");
        tx.send((lab.prefix().to_string(), child.id()))
            .expect("send");
        if child.try_wait().is_ok_and(|status| status.is_some()) {
            return;
        }
        panic!("the test fails while the lab is up");
    })
    .join();
    assert!(result.is_err(), "the thread panicked while the lab was up");
    let (prefix, pid) = rx.recv().expect("prefix");
    assert!(
        with_prefix(&prefix).is_empty(),
        "{:?}",
        with_prefix(&prefix)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "process {pid} in the lab was killed");
}

#[test]
fn leftovers_of_dead_processes_are_swept_and_live_ones_kept() {
    if !lab::require_root("lab_cleans_up_after_itself::sweep") {
        return;
    }
    let mut finished = Command::new("true").spawn().expect("true");
    let dead_pid = finished.id();
    finished.wait().expect("wait");
    let crashed = format!("{}{dead_pid}x0-crashed-run", lab::NETNS_PREFIX);
    let live = format!(
        "{}{}x999-still-running",
        lab::NETNS_PREFIX,
        std::process::id()
    );
    for name in [&crashed, &live] {
        let status = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("ip netns add");
        assert!(status.success());
    }
    // Another test's first lab may sweep concurrently, so only the outcome is checked.
    lab::sweep_leftovers().expect("sweep");
    let left = namespaces();
    let _ = Command::new("ip").args(["netns", "delete", &live]).status();
    assert!(!left.contains(&crashed), "crashed run swept");
    assert!(left.contains(&live), "a live process's lab is kept");
}

#[test]
fn two_labs_in_one_process_are_independent() {
    if !lab::require_root("lab_cleans_up_after_itself::two_labs") {
        return;
    }
    let mut first = Lab::new("first").expect("lab");
    let mut second = Lab::new("first").expect("lab with the same label");
    assert_ne!(first.prefix(), second.prefix());
    let a = first.public_host("host", 1).expect("host");
    let b = second.public_host("host", 1).expect("host");
    assert_eq!(a.ip(), b.ip(), "same addresses, separate namespaces");
    let second_prefix = second.prefix().to_string();
    first.teardown().expect("teardown");
    assert!(!with_prefix(&second_prefix).is_empty());
    let out = b
        .run(
            "ip",
            &["-brief", "addr", "show", "eth0"],
            Duration::from_secs(5),
        )
        .expect("run in the second lab");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&b.ip().to_string()));
    drop(second);
    assert!(with_prefix(&second_prefix).is_empty());
}

#[test]
fn a_lab_process_can_be_terminated_and_is_killed_on_drop() {
    if !lab::require_root("lab_cleans_up_after_itself::terminate") {
        return;
    }
    let mut lab = Lab::new("terminate").expect("lab");
    let host = lab.public_host("host", 1).expect("host");
    let mut first = host.command("sleep");
    first.arg("600");
    let mut sleeping = host.spawn(first).expect("sleep");
    sleeping.terminate().expect("SIGTERM");
    let status = sleeping
        .wait_timeout(Duration::from_secs(5))
        .expect("exits after SIGTERM");
    assert!(!status.success());

    let mut second = host.command("sleep");
    second.arg("600");
    let dropped = host.spawn(second).expect("sleep");
    let pid = dropped.pid();
    drop(dropped);
    assert!(!alive(pid), "killed and reaped on drop");
    lab.teardown().expect("teardown");
}
