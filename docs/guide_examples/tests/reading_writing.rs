//! Chapter "Reading and writing": append anywhere, read what is decided, the `LogEntry` variants.

use omnipaxos::util::{AppendOutcome, LogEntry};
use omnipaxos_guide::{kv, KeyValue, LocalCluster};
use std::collections::HashMap;

#[test]
fn append_and_read() {
    let mut cluster = LocalCluster::with_pids(&[1, 2, 3]);
    let leader = cluster.elect(100);
    let follower = if leader == 1 { 2 } else { 1 };

    // ANCHOR: append
    // On the leader the entry is replicated; on a follower it is forwarded to the leader.
    cluster
        .node(leader)
        .append(kv("x", 1))
        .expect("not stopped");
    cluster
        .node(follower)
        .append(kv("y", 2))
        .expect("not stopped");
    assert!(cluster.run_until(100, |c| c.all_decided(2)));
    // ANCHOR_END: append

    // ANCHOR: uncertain
    // In every pass of the event loop: the appends the node hands back.
    for returned in cluster.node(follower).take_returned_appends() {
        if returned.outcome == AppendOutcome::NotDecided {
            // Certainly not decided: appending it again cannot apply it twice.
            cluster
                .node(follower)
                .append(returned.entry)
                .expect("not stopped");
        } else {
            // Perhaps decided: append it again only if the state machine deduplicates (see
            // "Appends handed back"); here, the client is told the outcome is unknown.
            println!("outcome unknown: {:?}", returned.entry);
        }
    }
    // ANCHOR_END: uncertain
    assert_eq!(cluster.node(follower).get_stats().returned_appends, 0);

    // ANCHOR: apply
    /// A state machine that applies the decided log in order, each entry exactly once.
    #[derive(Default)]
    struct Store {
        map: HashMap<String, u64>,
        applied_up_to: usize, // the decided index applied so far
    }

    impl Store {
        fn catch_up(&mut self, node: &omnipaxos_guide::KvNode) {
            let Some(entries) = node.read_decided_suffix(self.applied_up_to) else {
                return; // nothing new is decided
            };
            for entry in entries {
                match entry {
                    LogEntry::Decided(KeyValue { key, value }) => {
                        self.map.insert(key, value);
                    }
                    // A compacted prefix: start from its snapshot (see "Compaction").
                    LogEntry::Snapshotted(s) => self.map = s.snapshot.map,
                    LogEntry::Trimmed(_) => panic!("trimmed entries cannot be rebuilt"),
                    // The configuration stopped here (see "Reconfiguration").
                    LogEntry::StopSign(ss, _decided) => println!("moving to {:?}", ss.next_config),
                    LogEntry::Undecided(_) => unreachable!("a decided suffix is decided"),
                }
            }
            self.applied_up_to = node.get_decided_idx();
        }
    }

    let mut store = Store::default();
    store.catch_up(cluster.node(follower));
    assert_eq!(store.map.len(), 2);
    assert_eq!(store.applied_up_to, 2);
    // ANCHOR_END: apply

    // ANCHOR: read
    let node = cluster.node(follower);
    // One index, a range, or everything from an index on (absolute indices).
    assert!(matches!(node.read(0), Some(LogEntry::Decided(_))));
    assert_eq!(node.read_entries(0..2).map(|v| v.len()), Some(2));
    assert!(node.read(2).is_none(), "beyond the end of the log");
    assert!(
        node.read_decided_suffix(2).is_none(),
        "nothing decided from 2 on"
    );
    // ANCHOR_END: read
}

#[test]
fn undecided_entries_are_visible_but_may_change() {
    // ANCHOR: undecided
    let mut cluster = LocalCluster::with_pids(&[1, 2, 3]);
    let leader = cluster.elect(100);
    // Cut the leader from both followers: what it appends now cannot reach a quorum.
    for pid in [1, 2, 3] {
        if pid != leader {
            cluster.set_link(leader, pid, false);
        }
    }
    cluster.node(leader).append(kv("lonely", 7)).unwrap();
    cluster.run(10); // the leader accepts it in its own log at once
    let node = cluster.node(leader);
    assert_eq!(node.get_decided_idx(), 0);
    assert!(matches!(node.read(0), Some(LogEntry::Undecided(_))));
    // ANCHOR_END: undecided
}
