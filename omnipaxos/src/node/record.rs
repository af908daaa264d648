//! The node record: the durable state a node keeps beyond the log and the Paxos state of
//! omnipaxos 0.2.4 (see [`crate::storage::Storage::write_atomically_with_record`]).
//!
//! It says, as what it means:
//!
//! * **where this configuration's log starts** ([`Start`]): at 0 (the first configuration), at
//!   the index of the previous configuration's stop sign, or not known yet (a server that joined
//!   on empty storage and has not heard from a server that knows);
//! * **what of the log before is still missing** (`pending_below`): a server that joined pulls
//!   the old log from others; until it holds it, the prefix below this index is *pending*: never
//!   read, never compacted, never reported as trimmed;
//! * **the stops this log went through** (`chain`): for each earlier configuration, its members,
//!   where its log ended and its decided stop sign, so that the node can tell stragglers of those
//!   configurations where their log ended, and can check who may tell it about them;
//! * **the incarnation**: a number raised each time a node is built on the storage, so that
//!   proposals a crashed incarnation forwarded are never taken for the new one's.
//!
//! The encoding is ours (the core has no serde without the `serde` feature): a version byte and
//! little-endian fields. Decoding checks every length: damaged bytes are an error, never a panic.

use crate::{
    storage::StopSign,
    util::{ConfigurationId, FlexibleQuorum, NodeId},
    ClusterConfig,
};

/// Where this configuration's log starts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// At index `0`: the first configuration of a cluster.
    Origin,
    /// At this index: the end (the stop sign's index) of the configuration before.
    At(usize),
    /// Not known yet: a server that joined on empty storage. It must not lead (a leader that
    /// does not know where its log starts could decide new entries over the old log).
    Unknown,
}

impl Start {
    /// The index, if known.
    pub(crate) fn index(self) -> Option<usize> {
        match self {
            Start::Origin => Some(0),
            Start::At(i) => Some(i),
            Start::Unknown => None,
        }
    }
}

/// A stopped configuration: its members, where its log ended (the index of its stop sign) and
/// the stop sign it decided there.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct Stop {
    pub(crate) config: ClusterConfig,
    pub(crate) end: usize,
    pub(crate) ss: StopSign,
}

impl Stop {
    pub(crate) fn config_id(&self) -> ConfigurationId {
        self.config.configuration_id
    }
    /// The configuration that continued it.
    pub(crate) fn next_id(&self) -> ConfigurationId {
        self.ss.next_config.configuration_id
    }
    /// Whether `pid` was a server of the stopped configuration or of the one after it.
    pub(crate) fn knows(&self, pid: NodeId) -> bool {
        self.config.nodes.contains(&pid) || self.ss.next_config.nodes.contains(&pid)
    }
}

/// The node record. Invariants (checked in debug builds by [`NodeRecord::check`] on every
/// change): `pending_below == 0` while the start is not known; when the start is `At(e)`, the
/// stop of the configuration before ours, if the chain holds it, ends at `e`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeRecord {
    /// The configuration of the node that wrote the record.
    pub(crate) config: ClusterConfig,
    pub(crate) incarnation: u64,
    pub(crate) start: Start,
    pub(crate) pending_below: usize,
    /// Oldest first. At most [`CHAIN_KEPT`] (older stops are forgotten).
    pub(crate) chain: Vec<Stop>,
}

/// Stops kept in the chain: a straggler more configurations behind cannot be told where its
/// log ended by this node (another one may).
pub(crate) const CHAIN_KEPT: usize = 16;

const VERSION: u8 = 1;

impl NodeRecord {
    /// The record of a node that was built for the first time, in configuration `config`.
    pub(crate) fn fresh(config: ClusterConfig) -> Self {
        let config_id = config.configuration_id;
        NodeRecord {
            config,
            incarnation: 0,
            start: if config_id <= 1 {
                Start::Origin
            } else {
                Start::Unknown
            },
            pending_below: 0,
            chain: Vec::new(),
        }
    }

    /// Checks the invariants (debug builds).
    pub(crate) fn check(&self) {
        debug_assert!(
            self.start != Start::Unknown || self.pending_below == 0,
            "a log pending below {} whose start is not known",
            self.pending_below
        );
        if let Start::At(e) = self.start {
            let ours = self.config.configuration_id;
            debug_assert!(
                self.chain
                    .iter()
                    .filter(|s| s.next_id() == ours)
                    .all(|s| s.end == e),
                "our log starts at {e}, but the configuration before ours ends elsewhere: {:?}",
                self.chain
            );
        }
    }

    /// The stop of configuration `c`, if this node knows it.
    pub(crate) fn stop_of(&self, c: ConfigurationId) -> Option<&Stop> {
        self.chain.iter().find(|s| s.config_id() == c)
    }

    /// Adds `stop` to the chain (replacing one of the same configuration), oldest first.
    pub(crate) fn push_stop(&mut self, stop: Stop) {
        self.chain.retain(|s| s.config_id() != stop.config_id());
        self.chain.push(stop);
        self.chain.sort_by_key(|s| s.config_id());
        if self.chain.len() > CHAIN_KEPT {
            let extra = self.chain.len() - CHAIN_KEPT;
            self.chain.drain(..extra);
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64);
        w.push(VERSION);
        put_config(&mut w, &self.config);
        put_u64(&mut w, self.incarnation);
        match self.start {
            Start::Origin => w.push(0),
            Start::At(i) => {
                w.push(1);
                put_u64(&mut w, i as u64);
            }
            Start::Unknown => w.push(2),
        }
        put_u64(&mut w, self.pending_below as u64);
        put_u64(&mut w, self.chain.len() as u64);
        for s in &self.chain {
            put_config(&mut w, &s.config);
            put_u64(&mut w, s.end as u64);
            put_config(&mut w, &s.ss.next_config);
            match &s.ss.metadata {
                None => w.push(0),
                Some(m) => {
                    w.push(1);
                    put_u64(&mut w, m.len() as u64);
                    w.extend_from_slice(m);
                }
            }
        }
        w
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { b: bytes, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(format!("unknown node record version {version}"));
        }
        let config = r.config()?;
        let incarnation = r.u64()?;
        let start = match r.u8()? {
            0 => Start::Origin,
            1 => Start::At(r.usize()?),
            2 => Start::Unknown,
            t => return Err(format!("unknown start tag {t}")),
        };
        let pending_below = r.usize()?;
        let n = r.len(1)?;
        let mut chain = Vec::with_capacity(n);
        for _ in 0..n {
            let config = r.config()?;
            let end = r.usize()?;
            let next_config = r.config()?;
            let metadata = match r.u8()? {
                0 => None,
                1 => {
                    let len = r.len(1)?;
                    Some(r.bytes(len)?.to_vec())
                }
                t => return Err(format!("unknown metadata tag {t}")),
            };
            chain.push(Stop {
                config,
                end,
                ss: StopSign::with(next_config, metadata),
            });
        }
        if r.at != bytes.len() {
            return Err(format!(
                "{} trailing bytes after the node record",
                bytes.len() - r.at
            ));
        }
        let rec = NodeRecord {
            config,
            incarnation,
            start,
            pending_below,
            chain,
        };
        // (A node that decided its stop sign while the log before it was pending has its
        // pending prefix beyond its start: it holds nothing of its own configuration.)
        let consistent = start != Start::Unknown || pending_below == 0;
        if !consistent {
            return Err(format!(
                "inconsistent node record: start {start:?}, pending below {pending_below}"
            ));
        }
        Ok(rec)
    }
}

fn put_u64(w: &mut Vec<u8>, x: u64) {
    w.extend_from_slice(&x.to_le_bytes());
}

fn put_config(w: &mut Vec<u8>, c: &ClusterConfig) {
    w.extend_from_slice(&c.configuration_id.to_le_bytes());
    put_u64(w, c.nodes.len() as u64);
    for n in &c.nodes {
        put_u64(w, *n);
    }
    match c.flexible_quorum {
        None => w.push(0),
        Some(q) => {
            w.push(1);
            put_u64(w, q.read_quorum_size as u64);
            put_u64(w, q.write_quorum_size as u64);
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| format!("node record truncated at byte {}", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.bytes(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn usize(&mut self) -> Result<usize, String> {
        let x = self.u64()?;
        usize::try_from(x).map_err(|_| format!("index {x} does not fit this platform"))
    }
    /// A count of items of at least `min_size` bytes each: never more than the bytes left.
    fn len(&mut self, min_size: usize) -> Result<usize, String> {
        let n = self.usize()?;
        if n.saturating_mul(min_size) > self.b.len() - self.at {
            return Err(format!("node record claims {n} items, more than its bytes"));
        }
        Ok(n)
    }
    fn config(&mut self) -> Result<ClusterConfig, String> {
        let configuration_id = self.u32()?;
        let n = self.len(8)?;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(self.u64()?);
        }
        let flexible_quorum = match self.u8()? {
            0 => None,
            1 => Some(FlexibleQuorum {
                read_quorum_size: self.usize()?,
                write_quorum_size: self.usize()?,
            }),
            t => return Err(format!("unknown quorum tag {t}")),
        };
        Ok(ClusterConfig {
            configuration_id,
            nodes,
            flexible_quorum,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: ConfigurationId, nodes: &[NodeId]) -> ClusterConfig {
        ClusterConfig {
            configuration_id: id,
            nodes: nodes.to_vec(),
            flexible_quorum: None,
        }
    }

    fn sample() -> NodeRecord {
        let mut next = config(3, &[2, 3, 4]);
        next.flexible_quorum = Some(FlexibleQuorum {
            read_quorum_size: 2,
            write_quorum_size: 2,
        });
        NodeRecord {
            config: config(3, &[2, 3, 4]),
            incarnation: 7,
            start: Start::At(42),
            pending_below: 30,
            chain: vec![
                Stop {
                    config: config(1, &[1, 2, 3]),
                    end: 30,
                    ss: StopSign::with(config(2, &[1, 2, 3, 4]), None),
                },
                Stop {
                    config: config(2, &[1, 2, 3, 4]),
                    end: 42,
                    ss: StopSign::with(next, Some(vec![1, 2, 3])),
                },
            ],
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let rec = sample();
        assert_eq!(NodeRecord::decode(&rec.encode()), Ok(rec));
        let fresh = NodeRecord::fresh(config(1, &[1, 2, 3]));
        assert_eq!(fresh.start, Start::Origin);
        assert_eq!(NodeRecord::decode(&fresh.encode()), Ok(fresh));
        assert_eq!(NodeRecord::fresh(config(2, &[1, 2])).start, Start::Unknown);
    }

    #[test]
    fn damaged_bytes_are_an_error_never_a_panic() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(NodeRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                // Either a valid record or an error; decoding must not panic or allocate
                // without bound.
                let _ = NodeRecord::decode(&b);
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(NodeRecord::decode(&longer).is_err());
    }

    #[test]
    fn an_inconsistent_record_is_refused() {
        let mut rec = sample();
        rec.start = Start::Unknown;
        rec.pending_below = 1;
        assert!(NodeRecord::decode(&rec.encode()).is_err());
    }

    #[test]
    fn the_chain_keeps_the_newest_stops_in_order() {
        let mut rec = NodeRecord::fresh(config(1, &[1]));
        for c in (1..=CHAIN_KEPT as u32 + 3).rev() {
            rec.push_stop(Stop {
                config: config(c, &[1]),
                end: c as usize,
                ss: StopSign::with(config(c + 1, &[1]), None),
            });
        }
        assert_eq!(rec.chain.len(), CHAIN_KEPT);
        assert_eq!(rec.chain[0].config_id(), 4);
        assert!(rec.stop_of(3).is_none());
        assert_eq!(rec.stop_of(5).map(|s| s.end), Some(5));
    }
}
