//! Scripted tests: every protocol rule in a small script with the exact messages it exchanges,
//! in the spirit of etcd raft's data-driven tests. Random seeds find bugs (`omnipaxos_sim`);
//! these scripts explain the rules.
//!
//! Each script in `tests/scripts/` is one `#[test]` here, named after its file, and starts with
//! a comment saying the rule, why it matters and what to look for in the output. The commands
//! are documented in `scripted/cluster.rs`, the file format in `scripted/datadriven.rs`.
//!
//! ```text
//! cargo test -p omnipaxos --test scripted                  # all scripts
//! cargo test -p omnipaxos --test scripted election         # one
//! REWRITE=1 cargo test -p omnipaxos --test scripted election
//! ```
//!
//! `REWRITE=1` replaces the expected blocks with what the commands print. A rewritten block is
//! only right if it agrees with the rule its script explains: read it.

#[path = "scripted/cluster.rs"]
mod cluster;
#[path = "scripted/datadriven.rs"]
mod datadriven;

use std::path::PathBuf;

fn script_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scripts")
}

fn run(name: &str) {
    let path = script_dir().join(format!("{name}.txt"));
    let mut runner = cluster::Runner::default();
    let rewrite = std::env::var_os("REWRITE").is_some();
    datadriven::run_file(&path, &mut runner, rewrite);
}

macro_rules! scripts {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*

        /// Every script file has its test (a new file is not silently skipped).
        #[test]
        fn every_script_has_a_test() {
            let tested = [$(stringify!($name)),*];
            let mut missing = Vec::new();
            for e in std::fs::read_dir(script_dir()).expect("tests/scripts") {
                let path = e.expect("a directory entry").path();
                if path.extension().is_some_and(|x| x == "txt") {
                    let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                    if !tested.contains(&stem.as_str()) {
                        missing.push(stem);
                    }
                }
            }
            assert!(missing.is_empty(), "scripts without a test in scripted.rs: {missing:?}");
        }
    };
}

scripts! {
    election,
    fast_failover,
    election_priority,
    prepare_promise,
    accept_sync,
    accept_batching,
    forwarding,
    forwarding_lost_placed,
    link_restored,
    returned_appends,
    deposed_leader,
    returned_appends_kept,
    resync,
    missed_prepare,
    compaction,
    reconfiguration,
    straggler,
    offer_held_stops,
    read_index,
    read_ready,
    read_stopped_config,
    check_quorum,
    crash_restart,
    outsiders,
    quorum_loss,
    constrained_election,
    chained,
    stopsign_leader_crash,
    reconfiguration_snapshot,
    flexible_quorum,
    election_timeout_one,
    crash_mid_takeover,
    restart_leader_report,
}

/// The safety checks the harness runs after every command do catch a fork: two single-server
/// clusters (one of them a stray the script started) that decide different entries at index 0
/// are reported, whatever the script expected.
#[test]
fn the_checks_catch_two_decisions_at_one_index() {
    use datadriven::Interpreter;
    let mut r = cluster::Runner::default();
    for c in [
        "cluster n=1",
        "join 9 id=1 nodes=9",
        "tick all 30",
        "append 1 10",
    ] {
        r.run(c).unwrap_or_else(|e| panic!("`{c}`: {e}"));
    }
    let log = r.run("log").unwrap();
    assert_eq!(log, vec!["1: 10", "9: (empty)"]);
    let err = r.run("append 9 99").expect_err("a fork at index 0");
    assert!(
        err.starts_with("agreement: node 9 decided 99 at index 0"),
        "{err}"
    );
}
