//! What `Durability::Immediate` syncs: every write, except one that only raises the decided
//! index, which is synced with the next write (a decided index is knowledge the cluster holds,
//! not a vote: a node that loses it to a power loss learns it again).

mod common;

use common::TempStorage;
use omnipaxos::storage::{Storage, StorageOp};
use omnipaxos_storage::conformance::{ballot, entries, stop_sign, TestEntry};

fn write(t: &mut TempStorage, ops: Vec<StorageOp<TestEntry>>) {
    t.s.write_atomically(ops).expect("write");
}

#[test]
fn a_write_that_only_raises_the_decided_index_is_not_synced_on_its_own() {
    let mut t = TempStorage::fresh();
    write(&mut t, vec![StorageOp::SetPromise(ballot(1))]);
    write(&mut t, vec![StorageOp::SetAcceptedRound(ballot(1))]);
    let base = t.s.log_syncs();

    write(&mut t, vec![StorageOp::AppendEntries(entries(0..4))]);
    assert_eq!(t.s.log_syncs(), base + 1, "entries are synced");
    write(&mut t, vec![StorageOp::SetDecidedIndex(2)]);
    assert_eq!(
        t.s.log_syncs(),
        base + 1,
        "a decided index alone waits for the next write"
    );
    write(
        &mut t,
        vec![
            StorageOp::AppendEntries(entries(4..6)),
            StorageOp::SetDecidedIndex(4),
        ],
    );
    assert_eq!(
        t.s.log_syncs(),
        base + 2,
        "entries with a decided index are synced"
    );
    write(&mut t, vec![StorageOp::SetCompactedIdx(1)]);
    assert_eq!(t.s.log_syncs(), base + 3, "other state changes are synced");
    write(&mut t, vec![StorageOp::SetStopsign(Some(stop_sign(2)))]);
    let before_ss = t.s.log_syncs();
    write(&mut t, vec![StorageOp::SetDecidedIndex(7)]);
    assert_eq!(
        t.s.log_syncs(),
        before_ss + 1,
        "a decided index that decides the stop sign is synced"
    );

    // What was written is read back, also after a reopen (the unsynced write is in the log).
    assert_eq!(t.s.get_decided_idx().unwrap(), 7);
    let t = t.reopen();
    assert_eq!(t.s.get_decided_idx().unwrap(), 7);
    assert_eq!(t.s.get_entries(0, 6).unwrap(), entries(0..6));
}

#[test]
fn deferred_durability_syncs_only_promises_and_accepted_rounds() {
    let mut t = TempStorage::fresh_deferred();
    let base = t.s.log_syncs();
    write(&mut t, vec![StorageOp::AppendEntries(entries(0..4))]);
    write(&mut t, vec![StorageOp::SetDecidedIndex(2)]);
    assert_eq!(t.s.log_syncs(), base);
    write(&mut t, vec![StorageOp::SetPromise(ballot(3))]);
    assert!(
        t.s.log_syncs() > base,
        "a promise is synced in every durability"
    );
}
