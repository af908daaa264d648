//! tikv `raft` 0.7 (`RawNode`) on its `MemStorage`, handling every `Ready` fully: persist the
//! entries and hard state, send the messages, apply the committed entries, advance.

use crate::workload::{Applying, Cluster, Payload};
use raft::{
    prelude::{ConfState, Entry, EntryType, Message},
    storage::MemStorage,
    Config, RawNode, StateRole,
};
use std::marker::PhantomData;

/// Three raft nodes.
pub struct Raft<P: Payload> {
    nodes: Vec<RawNode<MemStorage>>,
    live: [bool; 3],
    applied: [u64; 3],
    last_seq: [Option<u64>; 3],
    /// Reused between rounds.
    buf: Vec<Message>,
    _p: PhantomData<P>,
}

/// Raft's configuration: `election_ticks` as the election timeout (raft randomises it in
/// `[election_ticks, 2 * election_ticks)`), heartbeats five times per election timeout, up to
/// 1 MiB of entries per message and 256 messages in flight per follower (raft's defaults send
/// one entry per message).
pub fn config(id: u64, election_ticks: u64) -> Config {
    Config {
        id,
        election_tick: election_ticks as usize,
        heartbeat_tick: (election_ticks as usize / 5).max(1),
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        ..Default::default()
    }
}

impl<P: Payload> Cluster<P> for Raft<P> {
    const NAME: &'static str = "raft 0.7";

    fn new(election_ticks: u64) -> Self {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let nodes = (1..=3u64)
            .map(|id| {
                let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], [])));
                RawNode::new(&config(id, election_ticks), storage, &logger)
                    .expect("valid raft configuration")
            })
            .collect();
        let mut c = Raft {
            nodes,
            live: [true; 3],
            applied: [0; 3],
            last_seq: [None; 3],
            buf: Vec::new(),
            _p: PhantomData,
        };
        c.nodes[0].campaign().expect("campaign");
        crate::workload::elect(&mut c, 1_000);
        c
    }

    fn leader(&self) -> Option<usize> {
        (0..3).find(|&i| self.live[i] && self.nodes[i].raft.state == StateRole::Leader)
    }

    fn propose(&mut self, node: usize, seq: u64) {
        self.nodes[node]
            .propose(Vec::new(), P::make(seq).to_bytes())
            .expect("the leader takes proposals");
    }

    fn deliver(&mut self, apply_at: Applying) -> bool {
        for i in 0..3 {
            if self.live[i] {
                self.on_ready(i, apply_at.includes(i));
            }
        }
        let moved = !self.buf.is_empty();
        let mut msgs = std::mem::take(&mut self.buf);
        for m in msgs.drain(..) {
            let to = m.to as usize - 1;
            if self.live[to] {
                // A message for a stale term is answered or dropped by raft itself.
                let _ = self.nodes[to].step(m);
            }
        }
        self.buf = msgs;
        moved
    }

    fn tick(&mut self) {
        for i in 0..3 {
            if self.live[i] {
                self.nodes[i].tick();
            }
        }
    }

    fn crash(&mut self, node: usize) {
        self.live[node] = false;
    }

    fn applied(&self, node: usize) -> u64 {
        self.applied[node]
    }

    fn last_applied_seq(&self, node: usize) -> Option<u64> {
        self.last_seq[node]
    }
}

impl<P: Payload> Raft<P> {
    /// Handles the `Ready` of node `i` as raft's documentation prescribes.
    fn on_ready(&mut self, i: usize, count: bool) {
        if !self.nodes[i].has_ready() {
            return;
        }
        let mut rd = self.nodes[i].ready();
        if !rd.messages().is_empty() {
            self.buf.extend(rd.take_messages());
        }
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.nodes[i]
                .mut_store()
                .wl()
                .apply_snapshot(snap)
                .expect("apply snapshot");
        }
        let committed = rd.take_committed_entries();
        self.apply(i, count, &committed);
        if !rd.entries().is_empty() {
            self.nodes[i]
                .mut_store()
                .wl()
                .append(rd.entries())
                .expect("append");
        }
        if let Some(hs) = rd.hs() {
            self.nodes[i].mut_store().wl().set_hardstate(hs.clone());
        }
        if !rd.persisted_messages().is_empty() {
            self.buf.extend(rd.take_persisted_messages());
        }
        let mut light = self.nodes[i].advance(rd);
        if let Some(commit) = light.commit_index() {
            self.nodes[i]
                .mut_store()
                .wl()
                .mut_hard_state()
                .set_commit(commit);
        }
        self.buf.extend(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(i, count, &committed);
        self.nodes[i].advance_apply();
    }

    /// Applies committed entries: the application's own (not raft's empty entries).
    fn apply(&mut self, i: usize, count: bool, entries: &[Entry]) {
        for e in entries {
            if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                continue;
            }
            if count {
                self.applied[i] += 1;
                self.last_seq[i] = Some(P::seq_of_bytes(&e.data));
            }
        }
    }
}
