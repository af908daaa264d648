//! Chapter "Appends handed back": `take_returned_appends` and what an application does with
//! `AppendOutcome::NotDecided` and `AppendOutcome::Unknown`.

use omnipaxos::{
    util::{AppendOutcome, LogEntry, NodeId, ReturnedAppend},
    ClusterConfig, OmniPaxos, ProposeErr,
};
use omnipaxos_guide::{kv, node_config, KeyValue, KvNode, LocalCluster};
use omnipaxos_storage::MemoryStorage;
use std::collections::HashSet;

fn other_than(pids: &[NodeId], not: NodeId) -> Vec<NodeId> {
    pids.iter().copied().filter(|p| *p != not).collect()
}

#[test]
fn unknown_when_the_leader_changes_before_the_follower_learns() {
    let mut cluster = LocalCluster::with_pids(&[1, 2, 3]);
    let leader = cluster.elect(100);
    let followers = other_than(&[1, 2, 3], leader);
    let (f, g) = (followers[0], followers[1]);

    // ANCHOR: unknown
    // Messages from the leader to follower f are lost; f's messages still reach the leader.
    cluster.cut.insert((leader, f));
    cluster.node(f).append(kv("x", 1)).unwrap();
    // The leader takes the forward in and decides it with g ...
    assert!(cluster.run_until(20, |c| c.nodes[&g].get_decided_idx() == 1));
    // ... and crashes before f heard anything back. g or f takes over.
    cluster.crash(leader);
    assert!(cluster.run_until(100, |c| c.leader().is_some()));
    // f's leader changed before f learned where its append went: it is handed back as
    // Unknown, although it was decided.
    let returned = cluster.node(f).take_returned_appends();
    assert_eq!(
        returned,
        vec![ReturnedAppend {
            entry: kv("x", 1),
            outcome: AppendOutcome::Unknown
        }]
    );
    assert!(cluster.run_until(50, |c| c.nodes[&f].get_decided_idx() == 1));
    assert!(matches!(cluster.node(f).read(0), Some(LogEntry::Decided(e)) if e == kv("x", 1)));
    // ANCHOR_END: unknown
}

#[test]
fn not_decided_when_the_configuration_stops_first() {
    let cluster_config = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    // ANCHOR: not_decided
    // Server 1 collects appends in batches of 10 (and waits long for a partial batch).
    let mut cluster = LocalCluster::new([1, 2, 3].map(|pid| -> KvNode {
        let mut config = node_config(&cluster_config, pid);
        if pid == 1 {
            config.server_config.batch_size = 10;
            config.server_config.flush_batch_tick_timeout = 1_000;
            config.server_config.resend_message_tick_timeout = 1_000;
        }
        config.build(MemoryStorage::default()).unwrap()
    }));
    let leader = cluster.elect(100);
    assert_ne!(leader, 1, "the highest pid leads");
    cluster.node(1).append(kv("late", 1)).unwrap(); // waits in server 1's batch
                                                    // Meanwhile the configuration is stopped.
    let next = ClusterConfig {
        configuration_id: 2,
        ..cluster_config.clone()
    };
    cluster.node(leader).reconfigure(next, None).unwrap();
    assert!(cluster.run_until(50, |c| c.nodes[&1].is_reconfigured().is_some()));
    // The append never reached a leader: certainly not decided.
    let returned = cluster.node(1).take_returned_appends();
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].outcome, AppendOutcome::NotDecided);
    // ANCHOR_END: not_decided
}

// ANCHOR: dedupe
/// A client request with an id unique per client: appending it twice is harmless, because the
/// state machine applies each id once.
#[derive(Clone, Debug, PartialEq, Eq, omnipaxos::macros::Entry)]
struct Request {
    client: u64,
    id: u64,
    put: KeyValue,
}

/// Applies decided requests, each (client, id) once.
#[derive(Default)]
struct Dedup {
    seen: HashSet<(u64, u64)>,
    applied: Vec<KeyValue>,
}

impl Dedup {
    fn apply(&mut self, r: Request) {
        if self.seen.insert((r.client, r.id)) {
            self.applied.push(r.put);
        }
    }
}

/// Appends again what the node handed back, where that is safe. Returns the requests whose
/// client must be told that the outcome is unknown (or that will be appended to the next
/// configuration's node, if this one is stopping).
fn retry_returned(
    node: &mut OmniPaxos<Request, MemoryStorage<Request>>,
    deduplicates: bool,
) -> Vec<Request> {
    let mut not_retried = Vec::new();
    for ReturnedAppend { entry, outcome } in node.take_returned_appends() {
        let safe_to_retry = match outcome {
            // Certainly not decided: appending it again cannot apply it twice.
            AppendOutcome::NotDecided => true,
            // Perhaps decided (and any outcome a later version adds): appending it again is
            // safe only if the state machine applies each request id once.
            _ => deduplicates,
        };
        if !safe_to_retry {
            not_retried.push(entry);
        } else if let Err(ProposeErr::PendingReconfigEntry(entry)) = node.append(entry) {
            not_retried.push(entry);
        }
    }
    not_retried
}
// ANCHOR_END: dedupe

#[test]
fn retried_unknowns_are_applied_once() {
    let cluster_config = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    let mut cluster = LocalCluster::new([1, 2, 3].map(|pid| {
        node_config(&cluster_config, pid)
            .build(MemoryStorage::<Request>::default())
            .unwrap()
    }));
    let leader = cluster.elect(100);
    let followers = other_than(&[1, 2, 3], leader);
    let (f, g) = (followers[0], followers[1]);
    cluster.cut.insert((leader, f));
    let req = Request {
        client: 7,
        id: 1,
        put: kv("x", 1),
    };
    cluster.node(f).append(req).unwrap();
    assert!(cluster.run_until(20, |c| c.nodes[&g].get_decided_idx() == 1));
    cluster.crash(leader);
    assert!(cluster.run_until(100, |c| c.leader().is_some()));
    assert!(retry_returned(cluster.node(f), true).is_empty());
    assert!(cluster.run_until(100, |c| c.all_decided(2)));
    let mut app = Dedup::default();
    for e in cluster.node(f).read_decided_suffix(0).unwrap() {
        if let LogEntry::Decided(r) = e {
            app.apply(r);
        }
    }
    // The request is twice in the log, and applied once.
    assert_eq!(app.applied, vec![kv("x", 1)]);
}
