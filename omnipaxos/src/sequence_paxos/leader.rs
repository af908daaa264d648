//! The leader: take over a ballot, adopt the most up-to-date log of a read quorum, synchronise
//! the followers, stream entries and decide.
//!
//! [`LeaderState`] exists only while this node leads; it is dropped when a higher ballot takes
//! over, and what it held that was never sent is handed to the new leader.

use super::{
    forwarding::{ForwardSessions, Orphan},
    progress::{Progress, PromiseInfo, Stream},
    sync::PeerLog,
    Phase, SequencePaxos,
};
use crate::{
    ballot_leader_election::Ballot,
    messages::sequence_paxos::{
        AcceptDecide, AcceptStopSign, AcceptSync, Accepted, Decide, ForwardRun, ForwardStopSign,
        ForwardedRuns, LogSync, NewBallotReq, NotAccepted, PaxosMessage, PaxosMsg, Prepare,
        PrepareReq, Promise, ProposalForward, ResyncReq,
    },
    quorum::quorum_index,
    storage::{internal::InternalStorage, Entry, StopSign, Storage, StorageOp},
    util::NodeId,
};
use std::collections::VecDeque;

pub(crate) struct LeaderState<T: Entry> {
    n: Ballot,
    /// One per peer, in the order of `SequencePaxos::peers`.
    progress: Vec<(NodeId, Progress)>,
    /// Log syncs of the promises collected in the prepare phase.
    promise_syncs: Vec<(NodeId, LogSync<T>)>,
    /// Runs of the promisers' logs that we may lack, with what they tell of those logs; learned
    /// once the log is adopted.
    promise_runs: Vec<(ForwardedRuns, usize, PromiseInfo)>,
    /// The ballot in which the log adopted at the end of the prepare phase was accepted, and
    /// where that log's entries ended. A log accepted in that ballot agrees with ours up to the
    /// shorter of the two (both are prefixes of that ballot's leader's log), but not beyond:
    /// it may be longer than the adopted one, and we appended our own entries after it.
    adopted_round: Ballot,
    adopted_end: usize,
    /// Proposals appended in the prepare phase, proposed when the accept phase starts.
    pending: Vec<T>,
    /// Proposals of the accept phase that are not in the log yet.
    batch: Vec<T>,
    /// Which entries of `batch` are forwarded proposals (`idx` is the offset into `batch`),
    /// under the identity of their first forward.
    batch_runs: Vec<ForwardRun>,
    /// Forwarding sessions to acknowledge when the batch is in the log.
    acks_due: Vec<(NodeId, u64)>,
    /// Proposals this node forwarded to an earlier leader that never acknowledged them; checked
    /// against the adopted log when the accept phase starts.
    orphans: Vec<Orphan<T>>,
    /// The newest entries of the log, `tail_start..tail_start + tail.len()`, kept to stream them
    /// without reading storage. Invariant: `tail_start + tail.len() == log end` in accept phase.
    tail: VecDeque<T>,
    tail_start: usize,
    /// A stop sign proposed here, appended after the batch.
    pending_stopsign: Option<StopSign>,
    forward_sessions: ForwardSessions,
    /// Scratch space for the decided-index computation.
    scratch: Vec<usize>,
}

impl<T: Entry> LeaderState<T> {
    fn new(n: Ballot, peers: &[NodeId], log_end: usize) -> Self {
        LeaderState {
            n,
            progress: peers.iter().map(|p| (*p, Progress::Unpromised)).collect(),
            promise_syncs: Vec::new(),
            promise_runs: Vec::new(),
            adopted_round: Ballot::default(),
            adopted_end: 0,
            pending: Vec::new(),
            batch: Vec::new(),
            batch_runs: Vec::new(),
            acks_due: Vec::new(),
            orphans: Vec::new(),
            tail: VecDeque::new(),
            tail_start: log_end,
            pending_stopsign: None,
            forward_sessions: ForwardSessions::default(),
            scratch: Vec::with_capacity(peers.len() + 1),
        }
    }

    pub(super) fn batched_len(&self) -> usize {
        self.batch.len() + self.pending.len()
    }

    pub(super) fn has_pending_stopsign(&self) -> bool {
        self.pending_stopsign.is_some()
    }

    /// What was appended here and never sent anywhere, our orphans, and our proposed stop sign,
    /// for the next leader. Forwarded proposals still in the batch are dropped: they are not
    /// acknowledged, so their forwarders send them again.
    pub(super) fn into_unsent(self) -> (Vec<T>, Vec<Orphan<T>>, Option<StopSign>) {
        let mut own = self.pending;
        let mut runs = self.batch_runs.iter().peekable();
        for (i, e) in self.batch.into_iter().enumerate() {
            while runs.peek().is_some_and(|r| r.idx + r.len as usize <= i) {
                runs.next();
            }
            let forwarded = runs.peek().is_some_and(|r| r.idx <= i);
            if !forwarded {
                own.push(e);
            }
        }
        (own, self.orphans, self.pending_stopsign)
    }

    /// How far a promiser's log surely equals ours (once our log is adopted): its decided
    /// entries (our adopted log holds every decided entry), and more if it accepted in our
    /// round (its log is a prefix of ours) or in that of our adopted log (both are prefixes of
    /// that round's log, up to where the adopted log ends).
    fn shared_with(&self, info: &PromiseInfo) -> usize {
        let same = if info.n_accepted == self.n {
            info.accepted_idx
        } else if info.n_accepted == self.adopted_round && self.adopted_round != Ballot::default() {
            info.accepted_idx.min(self.adopted_end)
        } else {
            0
        };
        same.max(info.decided_idx)
    }

    /// What we know of each follower.
    pub(super) fn progress(&self) -> impl Iterator<Item = &(NodeId, Progress)> {
        self.progress.iter()
    }

    fn progress_mut(&mut self, pid: NodeId) -> Option<&mut Progress> {
        self.progress
            .iter_mut()
            .find(|(p, _)| *p == pid)
            .map(|(_, pr)| pr)
    }

    /// Entries `from..to` of the log, from the tail when it has them.
    pub(super) fn entries<B: Storage<T>>(
        &self,
        storage: &InternalStorage<T, B>,
        from: usize,
        to: usize,
    ) -> Vec<T> {
        if from >= self.tail_start && to <= self.tail_start + self.tail.len() {
            self.tail
                .range(from - self.tail_start..to - self.tail_start)
                .cloned()
                .collect()
        } else {
            storage.entries(from, to)
        }
    }

    /// Drops tail entries that every streaming follower was sent, and keeps the tail within
    /// `cap` entries (older ones are read from storage when needed).
    fn trim_tail(&mut self, cap: usize) {
        let min_next = self
            .progress
            .iter()
            .filter_map(|(_, p)| match p {
                Progress::Streaming(s) => Some(s.next_idx),
                _ => None,
            })
            .min()
            .unwrap_or(usize::MAX);
        let end = self.tail_start + self.tail.len();
        let keep_from = min_next.min(end).max(end.saturating_sub(cap));
        if self.tail_start < keep_from {
            self.tail.drain(..keep_from - self.tail_start);
            self.tail_start = keep_from;
        }
    }
}

impl<T: Entry, B: Storage<T>> SequencePaxos<T, B> {
    /// Takes over with ballot `n` (from the leader election): promise it, ask for promises.
    pub(super) fn become_leader(&mut self, n: Ballot) {
        let previous = self.leader.take();
        self.storage.set_promise(n);
        let mut st = LeaderState::new(n, &self.peers, self.storage.log_end());
        if let Some(prev) = previous {
            let (unsent, orphans, ss) = prev.into_unsent();
            st.pending = unsent;
            st.orphans = orphans;
            st.pending_stopsign = ss;
        }
        let (unsent, orphans) = self.forwarder.take_for_leader();
        st.pending.extend(unsent);
        st.orphans.extend(orphans);
        if st.pending_stopsign.is_none() && self.storage.stopsign().is_none() {
            st.pending_stopsign = self.pending_stopsign.take();
        }
        self.pending_stopsign = None;
        self.leader = Some(Box::new(st));
        self.phase = Phase::Prepare;
        self.accepted_owed = false;
        let prep = self.prepare_msg(n);
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            self.send(to, PaxosMsg::Prepare(prep));
        }
        self.check_prepare_quorum();
    }

    fn prepare_msg(&self, n: Ballot) -> Prepare {
        Prepare {
            n,
            // Without a base for a delta, ask for what the followers have from the start.
            decided_idx: self.reported_decided(),
            n_accepted: self.storage.accepted_round(),
            accepted_idx: self.storage.accepted_idx(),
            runs_known_from: self.origins.known_from(),
        }
    }

    pub(super) fn handle_promise(&mut self, from: NodeId, p: Promise<T>) {
        let asked_from = self.reported_decided();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        // A promise must be well-formed for the Prepare we sent: never accepted in a round above
        // the one promised, decided within what it accepted, and (in the prepare phase) its log
        // sync must start no earlier than we asked and end at its accepted index. One that is
        // not would mislead the adoption; it is dropped.
        let mut valid = p.n == l.n && p.n_accepted <= p.n && p.decided_idx <= p.accepted_idx;
        if valid && self.phase == Phase::Prepare {
            let own = (self.storage.accepted_round(), self.storage.accepted_idx());
            valid = match &p.log_sync {
                Some(sync) => {
                    let end = sync
                        .sync_idx
                        .checked_add(sync.suffix.len())
                        .and_then(|e| e.checked_add(usize::from(sync.stopsign.is_some())));
                    // Where we asked (our decided or accepted index), or later where the
                    // follower compacted: every server accepted what a trim removed.
                    let starts_where_asked =
                        sync.sync_idx >= asked_from || sync.decided_snapshot.is_some();
                    starts_where_asked
                        && end == Some(p.accepted_idx)
                        && (p.n_accepted, p.accepted_idx) > own
                }
                None => (p.n_accepted, p.accepted_idx) <= own,
            };
        }
        if !valid {
            return;
        }
        let info = PromiseInfo {
            n_accepted: p.n_accepted,
            decided_idx: p.decided_idx,
            accepted_idx: p.accepted_idx,
            forward_session: p.forward_session,
        };
        match self.phase {
            Phase::Prepare => {
                if let Some(pr) = l.progress_mut(from) {
                    *pr = Progress::Promised(info);
                }
                l.promise_syncs.retain(|(pid, _)| *pid != from);
                if let Some(sync) = p.log_sync {
                    l.promise_syncs.push((from, *sync));
                }
                l.promise_runs.push((p.runs, p.runs_end, info));
                self.check_prepare_quorum();
            }
            Phase::Accept => {
                let shared = l.shared_with(&info);
                self.origins.fill_below(&p.runs, p.runs_end.min(shared));
                self.sync_follower(from, info)
            }
            Phase::Idle | Phase::Recover => {}
        }
    }

    fn check_prepare_quorum(&mut self) {
        let Some(l) = self.leader.as_ref() else {
            return;
        };
        if self.phase != Phase::Prepare {
            return;
        }
        let promised = l.progress.iter().filter(|(_, p)| p.is_promised()).count();
        if self.quorum.is_prepare_quorum(promised + 1) {
            self.adopt_and_accept();
        }
    }

    /// End of the prepare phase: adopt the most up-to-date log among the promises (highest
    /// accepted round, then longest), synchronise the followers, and start accepting.
    fn adopt_and_accept(&mut self) {
        let Some(mut l) = self.leader.take() else {
            return;
        };
        let own_round = self.storage.accepted_round();
        let mut best_key = (own_round, self.storage.accepted_idx());
        let mut best: Option<NodeId> = None;
        let mut max_decided = self.storage.decided_idx();
        for (pid, pr) in &l.progress {
            if let Progress::Promised(info) = pr {
                max_decided = max_decided.max(info.decided_idx);
                if (info.n_accepted, info.accepted_idx) > best_key {
                    best_key = (info.n_accepted, info.accepted_idx);
                    best = Some(*pid);
                }
            }
        }
        let mut plan = None;
        l.adopted_round = own_round;
        if let Some(best) = best {
            let sync = l
                .promise_syncs
                .iter()
                .position(|(pid, _)| *pid == best)
                .map(|i| l.promise_syncs.swap_remove(i).1);
            plan = sync.and_then(|s| self.plan_log_sync(s));
            match plan {
                Some(_) => l.adopted_round = best_key.0,
                None => {
                    // The most up-to-date log cannot be applied to ours (it does not fit):
                    // adopting our own instead could lose decided entries. Count that promise
                    // out; it is asked for again.
                    if let Some(pr) = l.progress_mut(best) {
                        *pr = Progress::Unpromised;
                    }
                    self.leader = Some(l);
                    self.check_prepare_quorum();
                    return;
                }
            }
        }
        l.promise_syncs.clear();
        let promise_runs = std::mem::take(&mut l.promise_runs);
        let accepted = plan
            .as_ref()
            .map_or(self.storage.accepted_idx(), |p| p.accepted);
        let mut extra = vec![StorageOp::SetAcceptedRound(l.n)];
        let decided = max_decided.min(accepted);
        if decided > self.storage.decided_idx() {
            extra.push(StorageOp::SetDecidedIndex(decided));
        }
        match plan {
            Some(plan) => self.apply_log_sync(plan, extra, "adopt_log"),
            None => self.storage.write(extra, "adopt_log"),
        }
        self.phase = Phase::Accept;
        l.adopted_end = self.storage.log_end();
        for (runs, end, info) in &promise_runs {
            let shared = l.shared_with(info);
            self.origins.fill_below(runs, (*end).min(shared));
        }
        l.tail.clear();
        l.tail_start = self.storage.log_end();
        let promised: Vec<(NodeId, PromiseInfo)> = l
            .progress
            .iter()
            .filter_map(|(pid, pr)| match pr {
                Progress::Promised(info) => Some((*pid, *info)),
                _ => None,
            })
            .collect();
        let pending = std::mem::take(&mut l.pending);
        let orphans = std::mem::take(&mut l.orphans);
        self.leader = Some(l);
        for (pid, info) in promised {
            self.sync_follower(pid, info);
        }
        if self.storage.stopsign().is_none() {
            for e in pending {
                self.leader_append(e);
            }
            self.place_own_orphans(orphans);
        } else {
            // The adopted log ends with a stop sign: nothing more goes into it.
            self.stats.abandoned_forwards +=
                orphans.iter().map(|o| o.entries.len() as u64).sum::<u64>();
            self.forwarder
                .give_back(orphans.into_iter().flat_map(|o| o.entries).chain(pending));
        }
        self.leader_flush_batch();
        self.try_decide();
    }

    /// Sends `AcceptSync` to a follower that promised, from the point where its log surely
    /// agrees with ours, and starts streaming to it.
    fn sync_follower(&mut self, pid: NodeId, info: PromiseInfo) {
        let Some(l) = self.leader.as_ref() else {
            return;
        };
        let log_end = self.storage.log_end();
        let sync_idx = if info.n_accepted == l.n {
            // It accepted in our ballot before: its log is a prefix of ours.
            info.accepted_idx.min(log_end)
        } else if info.n_accepted == l.adopted_round {
            info.accepted_idx.min(l.adopted_end)
        } else {
            info.decided_idx.min(log_end)
        };
        let peer = PeerLog {
            decided: info.decided_idx,
        };
        self.start_stream(pid, sync_idx, info.forward_session, peer);
    }

    /// Sends `AcceptSync` from `sync_idx` to `pid` and (re)starts streaming after it.
    fn start_stream(
        &mut self,
        pid: NodeId,
        sync_idx: usize,
        held_session: Option<u64>,
        peer: PeerLog,
    ) {
        let log_sync = self.log_sync_for(sync_idx, peer);
        let decided_idx = self.storage.decided_idx();
        let log_end = self.storage.log_end();
        let has_ss = self.storage.stopsign().is_some();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let n = l.n;
        let session = l.forward_sessions.session_for_promise(pid, held_session);
        let Some(pr) = l.progress_mut(pid) else {
            return;
        };
        let (accepted, decided_known) = match pr {
            Progress::Streaming(s) => (s.accepted, s.decided_known.max(peer.decided)),
            _ => (None, peer.decided),
        };
        *pr = Progress::Streaming(Stream {
            next_idx: log_end,
            stopsign_sent: has_ss,
            accepted,
            decided_known,
            decided_sent: decided_idx,
            accepted_at_last_check: None,
            // The point where its log agrees with ours, not where this sync's entries start
            // (after a snapshot they start later): a resend must not assume more.
            sync_idx,
            forward_session: session,
        });
        self.send(
            pid,
            PaxosMsg::AcceptSync(AcceptSync {
                n,
                decided_idx,
                log_sync: Box::new(log_sync),
                forward_session: session,
            }),
        );
    }

    pub(super) fn handle_accepted(&mut self, from: NodeId, a: Accepted) {
        let accepted_idx = self.storage.accepted_idx();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if a.n != l.n || self.phase != Phase::Accept {
            return;
        }
        let Some(s) = l.progress_mut(from).and_then(Progress::stream_mut) else {
            return;
        };
        if a.accepted_idx > accepted_idx || a.decided_idx > a.accepted_idx {
            // Nobody can have accepted more than we sent: malformed.
            return;
        }
        let acc = a.accepted_idx;
        s.accepted = Some(s.accepted.map_or(acc, |old| old.max(acc)));
        s.decided_known = s.decided_known.max(a.decided_idx);
        self.try_decide();
    }

    /// Raises the decided index to the highest index a write quorum accepted in our ballot.
    pub(super) fn try_decide(&mut self) {
        let accepted_idx = self.storage.accepted_idx();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if self.phase != Phase::Accept {
            return;
        }
        l.scratch.clear();
        l.scratch.push(accepted_idx);
        for (_, p) in &l.progress {
            if let Progress::Streaming(Stream {
                accepted: Some(a), ..
            }) = p
            {
                l.scratch.push(*a);
            }
        }
        let idx = quorum_index(&mut l.scratch, self.quorum.write_size());
        if idx > self.storage.decided_idx() {
            self.storage.set_decided_idx(idx);
        }
    }

    pub(super) fn leader_append(&mut self, entry: T) {
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if self.phase != Phase::Accept {
            l.pending.push(entry);
            return;
        }
        l.batch.push(entry);
        // A full batch goes to storage when the node next acts (a take of the outgoing
        // messages, a message, a tick: see `flush_full_batch`), so that everything appended in
        // between costs one storage write and travels in one message. Alone we decide by
        // writing, so then at once.
        if l.batch.len() >= self.batch_size && self.quorum.write_size() <= 1 {
            self.leader_flush_batch();
        }
    }

    /// Writes a full batch of appended entries to our log (before anything reads or sends it).
    pub(super) fn flush_full_batch(&mut self) {
        if self
            .leader
            .as_ref()
            .is_some_and(|l| !l.batch.is_empty() && l.batch.len() >= self.batch_size)
        {
            self.leader_flush_batch();
        }
    }

    /// Our own forwards that an earlier leader never acknowledged: append those our (adopted)
    /// log does not hold. Where our knowledge of the log is partial, give them up rather than
    /// risk deciding one twice.
    fn place_own_orphans(&mut self, orphans: Vec<Orphan<T>>) {
        for o in orphans {
            let p = o.previous;
            for (k, e) in o.entries.into_iter().enumerate() {
                let seq = p.first_seq.wrapping_add(k as u64);
                match self.origins.holds(self.pid, p.n, p.session, seq, p.min_idx) {
                    Some(true) => {}
                    Some(false) => self.leader_append(e),
                    None => {
                        self.stats.abandoned_forwards += 1;
                        self.forwarder.give_back([e]);
                    }
                }
            }
        }
    }

    /// Appends a forwarded proposal: number `seq` of our forwarding session `session` with
    /// `origin`, recorded in the log's runs under `identity` (that of its first forward).
    fn leader_append_forwarded(&mut self, entry: T, identity: ForwardRun, session: u64, seq: u64) {
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let offset = l.batch.len();
        match l.batch_runs.last_mut() {
            Some(r)
                if r.origin == identity.origin
                    && r.n == identity.n
                    && r.session == identity.session
                    && r.seq.wrapping_add(r.len) == identity.seq
                    && r.idx + r.len as usize == offset =>
            {
                r.len += 1
            }
            _ => l.batch_runs.push(ForwardRun {
                idx: offset,
                len: 1,
                ..identity
            }),
        }
        l.forward_sessions.batched(identity.origin, session, seq);
        if !l.acks_due.contains(&(identity.origin, session)) {
            l.acks_due.push((identity.origin, session));
        }
        self.leader_append(entry);
    }

    pub(super) fn leader_propose_stopsign(&mut self, ss: StopSign) {
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        l.pending_stopsign = Some(ss);
        self.leader_flush_batch();
    }

    /// Appends the batch (then a proposed stop sign) to our log.
    pub(super) fn leader_flush_batch(&mut self) {
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if self.phase != Phase::Accept {
            return;
        }
        let grew = !l.batch.is_empty();
        if grew {
            let base = self.storage.log_end();
            // One clone of each entry for the storage, the originals move into the tail, and
            // `batch` keeps its buffer; a lone entry travels without a vector of its own.
            if l.batch.len() == 1 {
                let e = l.batch.pop().expect("one entry");
                self.storage
                    .write(vec![StorageOp::AppendEntry(e.clone())], "append_entries");
                l.tail.push_back(e);
            } else {
                let op = StorageOp::AppendEntries(l.batch.clone());
                self.storage.write(vec![op], "append_entries");
                l.tail.extend(l.batch.drain(..));
            }
            if !l.batch_runs.is_empty() {
                // The forwarded proposals are in our log now: remember their runs, and tell
                // their forwarders.
                l.forward_sessions.flushed();
                let n = l.n;
                for mut r in l.batch_runs.drain(..) {
                    r.idx += base;
                    self.origins.record(r);
                }
                for (peer, session) in std::mem::take(&mut l.acks_due) {
                    if let Some(ack) = l.forward_sessions.ack(n, peer, session) {
                        self.outgoing.push(PaxosMessage {
                            from: self.pid,
                            to: peer,
                            msg: PaxosMsg::ForwardAck(ack),
                        });
                    }
                }
            }
        }
        if self.storage.stopsign().is_none() {
            if let Some(ss) = l.pending_stopsign.take() {
                self.storage
                    .write(vec![StorageOp::SetStopsign(Some(ss))], "set_stopsign");
                return self.try_decide();
            }
        }
        // Our log is the longest of the ballot, so growing it raises the decided index only when
        // we alone are a write quorum; otherwise the followers' `Accepted` do.
        if grew && self.quorum.write_size() <= 1 {
            self.try_decide();
        }
    }

    /// Builds the coalesced replication messages: for each follower, one `AcceptDecide` with
    /// everything it was not sent yet (within its flow-control window), the stop sign, or a
    /// `Decide` when only the decided index moved.
    pub(super) fn leader_build_outgoing(&mut self) {
        let Self {
            leader,
            storage,
            outgoing,
            pid,
            phase,
            buffer_size,
            origins,
            ..
        } = self;
        let Some(l) = leader.as_mut() else { return };
        if *phase != Phase::Accept {
            return;
        }
        let n = l.n;
        let log_end = storage.log_end();
        let decided_idx = storage.decided_idx();
        let compacted = storage.compacted_idx();
        let window = *buffer_size;
        let mut behind_compaction = Vec::new();
        for i in 0..l.progress.len() {
            let Progress::Streaming(s) = &l.progress[i].1 else {
                continue;
            };
            let to = l.progress[i].0;
            if s.next_idx < compacted {
                // We compacted what it still needs: it gets our snapshot instead.
                let peer = PeerLog {
                    decided: s.decided_known,
                };
                behind_compaction.push((
                    to,
                    s.accepted.unwrap_or(s.sync_idx),
                    s.forward_session,
                    peer,
                ));
                continue;
            }
            let confirmed = s.accepted.unwrap_or(s.sync_idx);
            let window_end = confirmed.saturating_add(window).min(log_end);
            let mut next_idx = s.next_idx;
            let mut carried_decided = false;
            if next_idx < window_end {
                let end = window_end.min(next_idx.saturating_add(window));
                let entries = l.entries(storage, next_idx, end);
                outgoing.push(PaxosMessage {
                    from: *pid,
                    to,
                    msg: PaxosMsg::AcceptDecide(AcceptDecide {
                        n,
                        decided_idx,
                        start_idx: next_idx,
                        entries,
                        forwarded: origins.runs_in(next_idx, end),
                    }),
                });
                next_idx = end;
                carried_decided = true;
            }
            let mut stopsign_sent = s.stopsign_sent;
            if !stopsign_sent && next_idx == log_end {
                if let Some(ss) = storage.stopsign() {
                    outgoing.push(PaxosMessage {
                        from: *pid,
                        to,
                        msg: PaxosMsg::AcceptStopSign(AcceptStopSign {
                            n,
                            idx: log_end,
                            ss: ss.clone(),
                        }),
                    });
                    stopsign_sent = true;
                }
            }
            let decided_sent = s.decided_sent;
            if !carried_decided && decided_sent < decided_idx {
                outgoing.push(PaxosMessage {
                    from: *pid,
                    to,
                    msg: PaxosMsg::Decide(Decide { n, decided_idx }),
                });
            }
            if let Progress::Streaming(s) = &mut l.progress[i].1 {
                s.next_idx = next_idx;
                s.stopsign_sent = stopsign_sent;
                s.decided_sent = decided_idx;
            }
        }
        l.trim_tail(window.saturating_mul(2));
        for (pid, from, session, peer) in behind_compaction {
            self.start_stream(pid, from, Some(session), peer);
        }
    }

    /// Resend timeout of the leader: repeat `Prepare` to those that did not promise, repair
    /// followers that made no progress, and repeat `Decide` to those that did not report it.
    pub(super) fn leader_resend(&mut self) {
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let n = l.n;
        let accepted_idx = self.storage.accepted_idx();
        let decided_idx = self.storage.decided_idx();
        let mut prepare_to = Vec::new();
        let mut resync = Vec::new();
        let mut decide_to = Vec::new();
        for (pid, pr) in &mut l.progress {
            match pr {
                Progress::Unpromised => prepare_to.push(*pid),
                Progress::Promised(_) => {}
                Progress::Streaming(s) => {
                    let peer = PeerLog {
                        decided: s.decided_known,
                    };
                    match s.accepted {
                        None => resync.push((*pid, s.sync_idx, s.forward_session, peer)),
                        Some(a) if a < accepted_idx && s.accepted_at_last_check == Some(a) => {
                            resync.push((*pid, a, s.forward_session, peer))
                        }
                        _ => {
                            if s.decided_known < decided_idx {
                                decide_to.push(*pid);
                            }
                        }
                    }
                    s.accepted_at_last_check = s.accepted;
                }
            }
        }
        let prep = self.prepare_msg(n);
        for pid in prepare_to {
            self.send(pid, PaxosMsg::Prepare(prep));
        }
        if self.phase != Phase::Accept {
            return;
        }
        for (pid, from, session, peer) in resync {
            self.start_stream(pid, from, Some(session), peer);
        }
        for pid in decide_to {
            self.send(pid, PaxosMsg::Decide(Decide { n, decided_idx }));
        }
    }

    pub(super) fn handle_resync_req(&mut self, from: NodeId, r: ResyncReq) {
        let log_end = self.storage.log_end();
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if r.n != l.n || self.phase != Phase::Accept {
            return;
        }
        let n = l.n;
        match l.progress_mut(from) {
            Some(Progress::Streaming(s)) => {
                let session = s.forward_session;
                let sync_idx = if r.n_accepted == n {
                    r.accepted_idx
                } else {
                    r.decided_idx
                }
                .min(log_end);
                let peer = PeerLog {
                    decided: r.decided_idx,
                };
                self.start_stream(from, sync_idx, Some(session), peer);
            }
            Some(_) => {
                let prep = self.prepare_msg(n);
                self.send(from, PaxosMsg::Prepare(prep));
            }
            None => {}
        }
    }

    pub(super) fn handle_prepare_req(&mut self, from: NodeId, r: PrepareReq) {
        self.note_higher_promise(r.n_prom);
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let n = l.n;
        // The peer lost its place (it restarted, or missed our Prepare): it must promise again.
        if let Some(pr) = l.progress_mut(from) {
            *pr = Progress::Unpromised;
        }
        let prep = self.prepare_msg(n);
        self.send(from, PaxosMsg::Prepare(prep));
    }

    pub(super) fn handle_not_accepted(&mut self, na: NotAccepted) {
        if self.leader.as_ref().is_some_and(|l| l.n == na.n) {
            self.note_higher_promise(na.n_prom);
        }
    }

    pub(super) fn handle_proposal_forward(&mut self, from: NodeId, f: ProposalForward<T>) {
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if f.n != l.n || self.phase != Phase::Accept {
            return;
        }
        l.forward_sessions.taken_in(from, f.session, f.acked);
        let received = l
            .forward_sessions
            .receive(from, f.session, f.first_seq, f.entries.len());
        if let Some(skip) = received {
            let stopped = self.is_stopped();
            for (k, e) in f.entries.into_iter().enumerate().skip(skip) {
                let take = if stopped {
                    // A stopped configuration takes nothing more.
                    false
                } else if let Some(p) = f.previous {
                    // Forwarded before to a leader that never acknowledged: take it only if our
                    // log does not hold it.
                    let old_seq = p.first_seq.wrapping_add(k as u64);
                    match self.origins.holds(from, p.n, p.session, old_seq, p.min_idx) {
                        Some(true) => continue,
                        Some(false) => true,
                        None => false,
                    }
                } else {
                    true
                };
                if take {
                    let seq = f.first_seq.wrapping_add(k as u64);
                    let identity = match f.previous {
                        Some(p) => ForwardRun {
                            idx: 0,
                            len: 1,
                            origin: from,
                            n: p.n,
                            session: p.session,
                            seq: p.first_seq.wrapping_add(k as u64),
                        },
                        None => ForwardRun {
                            idx: 0,
                            len: 1,
                            origin: from,
                            n: f.n,
                            session: f.session,
                            seq,
                        },
                    };
                    self.leader_append_forwarded(e, identity, f.session, seq);
                } else {
                    self.stats.abandoned_forwards += 1;
                    if let Some(l) = self.leader.as_mut() {
                        let seq = f.first_seq.wrapping_add(k as u64);
                        l.forward_sessions.give_up(from, f.session, seq);
                    }
                }
            }
        }
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        if let Some(ack) = l.forward_sessions.ack(l.n, from, f.session) {
            self.send(from, PaxosMsg::ForwardAck(ack));
        }
    }

    /// A follower that restarted under our ballot asks us to lead on in a higher one, so that it
    /// can forward (see [`super::forwarding`]). The leader election takes it, if we still lead.
    pub(super) fn handle_new_ballot_req(&mut self, r: NewBallotReq) {
        let ours = self.leader.as_ref().is_some_and(|l| l.n == r.n);
        if ours && self.phase == Phase::Accept && !self.is_stopped() {
            self.new_ballot_wanted = Some(r.n);
        }
    }

    pub(super) fn handle_forward_stopsign(&mut self, f: ForwardStopSign) {
        let is_ours = self.leader.as_ref().is_some_and(|l| l.n == f.n);
        if is_ours && !self.is_stopped() {
            self.leader_propose_stopsign(f.ss);
        }
    }

    pub(super) fn leader_reconnected(&mut self, pid: NodeId) {
        let Some(l) = self.leader.as_mut() else {
            return;
        };
        let n = l.n;
        match l.progress_mut(pid) {
            Some(Progress::Streaming(s)) => {
                let from = s.accepted.unwrap_or(s.sync_idx);
                let session = s.forward_session;
                let peer = PeerLog {
                    decided: s.decided_known,
                };
                if self.phase == Phase::Accept {
                    self.start_stream(pid, from, Some(session), peer);
                }
            }
            Some(_) => {
                let prep = self.prepare_msg(n);
                self.send(pid, PaxosMsg::Prepare(prep));
            }
            None => {}
        }
    }
}
