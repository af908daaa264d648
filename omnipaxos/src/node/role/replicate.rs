//! The leader streams its log to the followers: coalesced `AcceptDecide`s within each
//! follower's flow-control window (from the in-memory tail when it can), the stop sign, bare
//! `Decide`s, the accepts that may leave ahead of the leader's own write, and resends to
//! followers that stalled.

use super::{
    super::{
        core::Core,
        wire::role::{AcceptDecide, AcceptStopSign, Decide, RoleMsg},
    },
    leader::Leader,
    progress::Progress,
};
use crate::storage::{Entry, Storage};

impl<T: Entry> Leader<T> {
    /// Builds the coalesced replication messages: for each follower, one `AcceptDecide` with
    /// everything it was not sent yet (within its flow-control window), the stop sign, or a
    /// `Decide` when only the decided index moved.
    pub(crate) fn build_outgoing<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if !self.is_accepting() {
            return;
        }
        let n = self.n;
        let log_end = core.log.log_end();
        debug_assert_eq!(
            self.tail_start + self.tail.len(),
            log_end,
            "the leader's tail does not end at its log end"
        );
        let decided_idx = core.log.decided_idx();
        let compacted = core.log.compacted_idx();
        let mut behind_compaction = Vec::new();
        for i in 0..self.progress.len() {
            let to = self.progress[i].0;
            let Progress::Streaming(s) = &self.progress[i].1 else {
                continue;
            };
            if s.next_idx < compacted {
                // We compacted what it still needs: it is synced again (with our snapshot).
                behind_compaction.push((to, s.accepted.unwrap_or(s.sync_idx), s.decided_known));
                continue;
            }
            let carried_decided = self.push_entries(core, i, decided_idx, false);
            let Progress::Streaming(s) = &mut self.progress[i].1 else {
                continue;
            };
            if !s.stopsign_sent && s.next_idx == log_end {
                if let Some(ss) = core.log.stopsign() {
                    let msg = RoleMsg::AcceptStopSign(AcceptStopSign {
                        n,
                        idx: log_end,
                        ss: ss.clone(),
                    });
                    core.out.push((to, msg.into()));
                    s.stopsign_sent = true;
                }
            }
            if !carried_decided && s.decided_sent < decided_idx {
                core.out
                    .push((to, RoleMsg::Decide(Decide { n, decided_idx }).into()));
            }
            s.decided_sent = decided_idx;
        }
        self.trim_tail(core.timing.buffer_size.saturating_mul(2));
        for (pid, from, decided) in behind_compaction {
            self.start_stream(core, pid, from, decided);
        }
    }

    /// Builds, before our own write, the `AcceptDecide`s of entries our log holds staged (see
    /// [`crate::OmniPaxos::take_messages_ahead_of_write`]). They carry the *written* decided
    /// index: the staged one may count our own staged entries, which must not be announced
    /// before they are written. Accepting them promises nothing for us: we count ourselves
    /// towards a quorum only once the write is done (`try_decide` runs again after it, and the
    /// decided index it raises is written before any message carries it).
    pub(crate) fn build_ahead<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if !self.is_accepting() {
            return;
        }
        let decided = core.log.durable_decided_idx();
        let compacted = core.log.compacted_idx();
        for i in 0..self.progress.len() {
            let Progress::Streaming(s) = &self.progress[i].1 else {
                continue;
            };
            if s.next_idx < compacted {
                continue;
            }
            if self.push_entries(core, i, decided, true) {
                if let Progress::Streaming(s) = &mut self.progress[i].1 {
                    s.decided_sent = s.decided_sent.max(decided);
                }
            }
        }
    }

    /// Queues to the streaming follower at `i` one `AcceptDecide` with the entries it was not
    /// sent yet within its flow-control window, carrying `decided_idx`. Whether one was queued.
    /// `tail_only`: only if our tail (in memory) holds them (a read of the storage would write
    /// what is staged first).
    pub(super) fn push_entries<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        i: usize,
        decided_idx: usize,
        tail_only: bool,
    ) -> bool {
        let log_end = core.log.log_end();
        let window = core.timing.buffer_size;
        let to = self.progress[i].0;
        let Progress::Streaming(s) = &mut self.progress[i].1 else {
            return false;
        };
        let confirmed = s.accepted.unwrap_or(s.sync_idx);
        let window_end = confirmed.saturating_add(window).min(log_end);
        if s.next_idx >= window_end {
            return false;
        }
        let from = s.next_idx;
        let end = window_end.min(from.saturating_add(window));
        let in_tail = from >= self.tail_start && end <= self.tail_start + self.tail.len();
        if tail_only && !in_tail {
            return false;
        }
        let entries = if in_tail {
            self.tail
                .range(from - self.tail_start..end - self.tail_start)
                .cloned()
                .collect()
        } else {
            core.log.entries(from, end)
        };
        core.out.push((
            to,
            RoleMsg::AcceptDecide(AcceptDecide {
                n: self.n,
                decided_idx,
                start_idx: from,
                entries,
            })
            .into(),
        ));
        s.next_idx = end;
        debug_assert!(
            s.next_idx <= log_end,
            "next entry for {to} beyond the log end"
        );
        true
    }

    /// Drops tail entries that every streaming follower was sent, and keeps the tail within
    /// `cap` entries (older ones are read from storage when needed).
    pub(super) fn trim_tail(&mut self, cap: usize) {
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

    /// Resend timeout: repeat `Prepare` to those that did not promise, repair followers that
    /// made no progress, and repeat `Decide` to those that did not report it.
    pub(crate) fn resend<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        let n = self.n;
        let accepted_idx = core.log.accepted_idx();
        let decided_idx = core.log.decided_idx();
        let mut prepare_to = Vec::new();
        let mut resync = Vec::new();
        let mut decide_to = Vec::new();
        for (pid, pr) in &mut self.progress {
            match pr {
                Progress::Unpromised => prepare_to.push(*pid),
                Progress::Promised(_) => {}
                Progress::Streaming(s) => {
                    match s.accepted {
                        None => resync.push((*pid, s.sync_idx, s.decided_known)),
                        Some(a) if a < accepted_idx && s.accepted_at_last_check == Some(a) => {
                            resync.push((*pid, a, s.decided_known))
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
        let prep = super::prepare::prepare_msg(core, n);
        for pid in prepare_to {
            core.send(pid, RoleMsg::Prepare(prep));
        }
        if !self.is_accepting() {
            return;
        }
        for (pid, from, decided) in resync {
            self.start_stream(core, pid, from, decided);
        }
        for pid in decide_to {
            core.send(pid, RoleMsg::Decide(Decide { n, decided_idx }));
        }
    }
}
