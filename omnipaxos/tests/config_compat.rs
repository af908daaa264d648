//! omnipaxos 0.2.4 interfaces kept next to the configuration: the dashboard's states
//! (`utils::ui`, `OmniPaxos::get_ui_states`) and, with the feature `logging`, a node whose
//! `ServerConfig` carries an `slog` logger.

use omnipaxos::{
    macros::Entry,
    messages::Message,
    utils::ui::{ClusterState, OmniPaxosStates, MAX_INDEXED_PID},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;

#[derive(Clone, Debug, PartialEq, Entry)]
struct Value(u64);

type Node = OmniPaxos<Value, MemoryStorage<Value>>;

fn node(nodes: &[u64], server: ServerConfig) -> Node {
    OmniPaxosConfig {
        cluster_config: ClusterConfig {
            configuration_id: 1,
            nodes: nodes.to_vec(),
            ..Default::default()
        },
        server_config: server,
    }
    .build(MemoryStorage::default())
    .expect("valid configuration")
}

fn cluster(nodes: &[u64]) -> Vec<Node> {
    nodes
        .iter()
        .map(|pid| {
            node(
                nodes,
                ServerConfig {
                    pid: *pid,
                    election_tick_timeout: 2,
                    ..Default::default()
                },
            )
        })
        .collect()
}

/// Ticks every node and delivers every message until `done` or 1,000 rounds.
fn run_until(nodes: &mut [Node], done: impl Fn(&[Node]) -> bool) {
    let mut msgs: Vec<Message<Value>> = Vec::new();
    for _ in 0..1_000 {
        if done(nodes) {
            return;
        }
        for n in nodes.iter_mut() {
            n.tick();
            n.take_outgoing_messages(&mut msgs);
        }
        while let Some(m) = msgs.pop() {
            if let Some(to) = nodes.iter_mut().find(|n| n.get_pid() == m.get_receiver()) {
                to.handle_incoming(m);
                to.take_outgoing_messages(&mut msgs);
            }
        }
    }
    panic!("not done after 1,000 rounds");
}

#[test]
fn ui_states_of_a_fresh_node_know_nothing_yet() {
    let n = node(
        &[1, 2, 3],
        ServerConfig {
            pid: 2,
            ..Default::default()
        },
    );
    let states: OmniPaxosStates = n.get_ui_states();
    assert_eq!(states.current_leader, None);
    assert_eq!(states.decided_idx, 0);
    assert_eq!(states.current_ballot, n.get_election_ballot());
    assert!(states.heartbeats.is_empty());
    assert_eq!(
        states.cluster_state,
        ClusterState {
            accepted_indexes: vec![0, 0, 0],
            heartbeats: vec![],
        }
    );
}

#[test]
fn ui_states_follow_the_leader_and_the_log() {
    let mut nodes = cluster(&[1, 2, 3]);
    let leader_of = |n: &Node| n.get_current_leader().map(|(pid, _)| pid);
    run_until(&mut nodes, |ns| {
        ns.iter()
            .all(|n| leader_of(n).is_some() && leader_of(n) == leader_of(&ns[0]))
    });
    let leader = nodes[0].get_current_leader().unwrap().0;
    for i in 0..5 {
        nodes[i % 3].append(Value(i as u64)).expect("append");
    }
    run_until(&mut nodes, |ns| ns.iter().all(|n| n.get_decided_idx() == 5));
    for n in &nodes {
        let states = n.get_ui_states();
        assert_eq!(states.current_leader, Some(leader));
        assert_eq!(states.decided_idx, 5);
        assert_eq!(states.current_ballot, n.get_election_ballot());
        let pid = n.get_pid() as usize;
        let mut expected = vec![0; pid + 1];
        expected[pid] = n.get_accepted_idx();
        assert_eq!(states.cluster_state.accepted_indexes, expected);
        assert_eq!(states.cluster_state.accepted_indexes[pid], 5);
        assert!(states.heartbeats.is_empty() && states.cluster_state.heartbeats.is_empty());
    }
}

#[test]
fn a_large_pid_gets_no_accepted_index_vector() {
    let big = MAX_INDEXED_PID as u64 + 1;
    let n = node(
        &[1, big],
        ServerConfig {
            pid: big,
            ..Default::default()
        },
    );
    assert!(n.get_ui_states().cluster_state.accepted_indexes.is_empty());
    let n = node(
        &[1, MAX_INDEXED_PID as u64],
        ServerConfig {
            pid: MAX_INDEXED_PID as u64,
            ..Default::default()
        },
    );
    assert_eq!(
        n.get_ui_states().cluster_state.accepted_indexes.len(),
        MAX_INDEXED_PID + 1
    );
}

#[cfg(feature = "logging")]
mod logging {
    use super::*;
    use omnipaxos::utils::logger::dispatch_for;
    use slog::Drain;
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    struct Count(Arc<AtomicUsize>);

    impl Drain for Count {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, _: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn a_server_config_with_a_custom_logger_builds_clones_and_compares() {
        let seen = Arc::new(AtomicUsize::new(0));
        let logger = slog::Logger::root(Count(seen.clone()), slog::o!());
        let server = ServerConfig {
            pid: 1,
            custom_logger: Some(logger),
            logger_file_path: None,
            ..Default::default()
        };
        // Loggers have no equality: the configurations compare equal without looking at them.
        assert_eq!(
            server,
            ServerConfig {
                pid: 1,
                ..Default::default()
            }
        );
        assert!(format!("{server:?}").contains("custom_logger: Some("));
        let dispatch = dispatch_for(&server).expect("a custom logger is set");
        let mut n = node(&[1], server.clone());
        // Calls run under the node's dispatcher report to its logger.
        tracing::dispatcher::with_default(&dispatch, || {
            for _ in 0..5 {
                n.tick();
            }
            tracing::info!("from the application, under the node's dispatcher");
        });
        assert!(seen.load(Ordering::SeqCst) >= 1);
        assert!(
            n.get_current_leader().is_some(),
            "a single node elects itself"
        );
    }
}
