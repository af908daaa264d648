//! A linearizability checker for the recorded client history, key by key (a key-value map is
//! linearizable iff each key, a register, is).
//!
//! The search is the one of Wing & Gong with Lowe's memoisation: it builds a linearization one
//! operation at a time, trying as next any operation that was invoked before every remaining
//! operation returned, and remembers the (set of linearized operations, register value) pairs
//! it has already explored. A request that failed (no answer) may or may not have taken effect:
//! its response time is infinite and it need not be linearized at all. Failed reads are dropped.

use crate::kv::{KVCommand, KVResult};
use crate::workload::Record;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What one operation did to (or saw in) the register.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegOp {
    /// Set the value (`None`: delete).
    Write(Option<String>),
    /// Read this value.
    Read(Option<String>),
}

/// One operation of a single key's history. Times are in any common unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistOp {
    /// Invocation time.
    pub call: u64,
    /// Response time; `None` if no answer came (the operation may or may not have happened).
    pub ret: Option<u64>,
    /// The operation.
    pub op: RegOp,
}

/// Why a history is not (or could not be shown) linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// No linearization exists for this key.
    NotLinearizable {
        /// The key.
        key: String,
        /// The most operations any attempt could linearize.
        longest_prefix: usize,
        /// Operations of the key (answered ones and failed writes).
        ops: usize,
    },
    /// The search hit its budget without an answer.
    TooComplex(String),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::NotLinearizable {
                key,
                longest_prefix,
                ops,
            } => write!(
                f,
                "key {key:?} is not linearizable: no order explains more than {longest_prefix} of its {ops} operations"
            ),
            CheckError::TooComplex(k) => write!(f, "key {k:?}: search budget exhausted"),
        }
    }
}

impl std::error::Error for CheckError {}

/// States explored per key before giving up.
const BUDGET: usize = 2_000_000;

/// Checks one register's history, starting from `None`.
/// `Ok(())` if linearizable; otherwise the longest prefix found.
pub fn check_register(ops: &[HistOp]) -> Result<(), usize> {
    check_register_budget(ops, BUDGET).map_err(|e| e.unwrap_or(usize::MAX))
}

/// `Err(None)`: budget exhausted; `Err(Some(n))`: not linearizable, best prefix `n`.
fn check_register_budget(ops: &[HistOp], budget: usize) -> Result<(), Option<usize>> {
    let mut ops: Vec<&HistOp> = ops.iter().collect();
    ops.sort_by_key(|o| o.call);
    let n = ops.len();
    // Intern values: 0 is "absent".
    let mut ids: HashMap<&Option<String>, u32> = HashMap::new();
    let mut val = Vec::with_capacity(n);
    for o in &ops {
        let v = match &o.op {
            RegOp::Write(v) | RegOp::Read(v) => v,
        };
        let next = ids.len() as u32 + 1;
        let id = if v.is_none() {
            0
        } else {
            *ids.entry(v).or_insert(next)
        };
        val.push(id);
    }
    let is_write: Vec<bool> = ops
        .iter()
        .map(|o| matches!(o.op, RegOp::Write(_)))
        .collect();
    let required = ops.iter().filter(|o| o.ret.is_some()).count();
    let words = n.div_ceil(64).max(1);
    let mut seen: HashSet<(Vec<u64>, u32)> = HashSet::new();
    // Depth-first search with an explicit stack of (linearized set, value, count done, candidates).
    struct Frame {
        set: Vec<u64>,
        state: u32,
        done_required: usize,
        depth: usize,
        cands: Vec<usize>,
        pos: usize,
    }
    let candidates = |set: &Vec<u64>| -> Vec<usize> {
        let min_ret = (0..n)
            .filter(|&i| set[i / 64] & (1 << (i % 64)) == 0)
            .filter_map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        (0..n)
            .filter(|&i| set[i / 64] & (1 << (i % 64)) == 0 && ops[i].call <= min_ret)
            .collect()
    };
    let start = vec![0u64; words];
    let c = candidates(&start);
    let mut stack = vec![Frame {
        set: start,
        state: 0,
        done_required: 0,
        depth: 0,
        cands: c,
        pos: 0,
    }];
    let mut best = 0;
    let mut explored = 0usize;
    while let Some(top) = stack.last_mut() {
        if top.done_required == required {
            return Ok(());
        }
        if top.pos >= top.cands.len() {
            stack.pop();
            continue;
        }
        let i = top.cands[top.pos];
        top.pos += 1;
        let new_state = if is_write[i] {
            val[i]
        } else if val[i] == top.state {
            top.state
        } else {
            continue;
        };
        let mut set = top.set.clone();
        set[i / 64] |= 1 << (i % 64);
        let key = (set, new_state);
        if seen.contains(&key) {
            continue;
        }
        explored += 1;
        if explored > budget {
            return Err(None);
        }
        let (set, state) = key.clone();
        seen.insert(key);
        let done_required = top.done_required + usize::from(ops[i].ret.is_some());
        let depth = top.depth + 1;
        best = best.max(depth);
        let cands = candidates(&set);
        stack.push(Frame {
            set,
            state,
            done_required,
            depth,
            cands,
            pos: 0,
        });
    }
    Err(Some(best))
}

/// Splits `records` by key and checks each key (all keys start absent).
pub fn check_history(records: &[Record]) -> Result<(), CheckError> {
    let mut by_key: BTreeMap<String, Vec<HistOp>> = BTreeMap::new();
    for r in records {
        let call = r.start.as_micros() as u64;
        let ret = r.end.map(|e| e.as_micros() as u64);
        let op = match (&r.cmd, &r.result) {
            (KVCommand::Put(_, v), _) => RegOp::Write(Some(v.clone())),
            (KVCommand::Delete(_), _) => RegOp::Write(None),
            (KVCommand::Get(_), Some(KVResult::Read(v))) => RegOp::Read(v.clone()),
            (KVCommand::Get(_), _) => continue,
        };
        by_key
            .entry(r.cmd.key().to_string())
            .or_default()
            .push(HistOp { call, ret, op });
    }
    for (key, ops) in by_key {
        match check_register_budget(&ops, BUDGET) {
            Ok(()) => {}
            Err(Some(longest_prefix)) => {
                return Err(CheckError::NotLinearizable {
                    key,
                    longest_prefix,
                    ops: ops.len(),
                })
            }
            Err(None) => return Err(CheckError::TooComplex(key)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(call: u64, ret: Option<u64>, v: &str) -> HistOp {
        HistOp {
            call,
            ret,
            op: RegOp::Write(Some(v.into())),
        }
    }
    fn r(call: u64, ret: u64, v: Option<&str>) -> HistOp {
        HistOp {
            call,
            ret: Some(ret),
            op: RegOp::Read(v.map(|s| s.to_string())),
        }
    }

    #[test]
    fn sequential_good_history() {
        let h = [
            w(0, Some(1), "a"),
            r(2, 3, Some("a")),
            w(4, Some(5), "b"),
            r(6, 7, Some("b")),
        ];
        assert!(check_register(&h).is_ok());
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_caught() {
        // b was acknowledged at 5; a read starting at 6 still sees a.
        let h = [w(0, Some(1), "a"), w(4, Some(5), "b"), r(6, 7, Some("a"))];
        assert_eq!(check_register(&h), Err(2));
    }

    #[test]
    fn read_of_never_written_value_is_caught() {
        let h = [w(0, Some(1), "a"), r(2, 3, Some("zzz"))];
        assert!(check_register(&h).is_err());
    }

    #[test]
    fn lost_write_is_caught() {
        // An acknowledged write whose value is gone: a later read sees nothing.
        let h = [w(0, Some(1), "a"), r(2, 3, None)];
        assert!(check_register(&h).is_err());
    }

    #[test]
    fn concurrent_operations_may_order_either_way() {
        // The read overlaps both writes: it may see a or b, and a later read must agree.
        let h = [
            w(0, Some(10), "a"),
            w(1, Some(11), "b"),
            r(2, 12, Some("a")),
            r(13, 14, Some("a")),
        ];
        assert!(check_register(&h).is_ok());
        // Two later reads disagreeing, with no write between them, is impossible.
        let bad = [
            w(0, Some(10), "a"),
            w(1, Some(11), "b"),
            r(13, 14, Some("a")),
            r(15, 16, Some("b")),
        ];
        assert!(check_register(&bad).is_err());
    }

    #[test]
    fn failed_writes_may_or_may_not_happen() {
        let pending = w(0, None, "p");
        assert!(check_register(&[pending.clone(), r(5, 6, Some("p"))]).is_ok());
        assert!(check_register(&[pending.clone(), r(5, 6, None)]).is_ok());
        // ...but not happen, then unhappen.
        let h = [pending, r(5, 6, Some("p")), r(7, 8, None)];
        assert!(check_register(&h).is_err());
    }

    #[test]
    fn delete_then_read_absent() {
        let h = [
            w(0, Some(1), "a"),
            HistOp {
                call: 2,
                ret: Some(3),
                op: RegOp::Write(None),
            },
            r(4, 5, None),
        ];
        assert!(check_register(&h).is_ok());
    }

    #[test]
    fn history_split_by_key() {
        use std::time::Duration;
        let rec = |cmd: KVCommand, s: u64, e: u64, res: KVResult| Record {
            client_id: 1,
            cmd,
            start: Duration::from_micros(s),
            end: Some(Duration::from_micros(e)),
            result: Some(res),
        };
        let good = vec![
            rec(
                KVCommand::Put("x".into(), "1".into()),
                0,
                1,
                KVResult::Write,
            ),
            rec(
                KVCommand::Put("y".into(), "2".into()),
                0,
                1,
                KVResult::Write,
            ),
            rec(
                KVCommand::Get("x".into()),
                2,
                3,
                KVResult::Read(Some("1".into())),
            ),
        ];
        assert!(check_history(&good).is_ok());
        let mut bad = good.clone();
        bad.push(rec(
            KVCommand::Get("y".into()),
            4,
            5,
            KVResult::Read(Some("1".into())),
        ));
        match check_history(&bad) {
            Err(CheckError::NotLinearizable { key, .. }) => assert_eq!(key, "y"),
            other => panic!("expected a violation on y, got {other:?}"),
        }
    }

    #[test]
    fn large_concurrent_history_is_fast() {
        // 300 writes by 3 clients, each overlapping its neighbours, and reads that follow them.
        let mut h = Vec::new();
        for i in 0..300u64 {
            h.push(w(i * 10, Some(i * 10 + 25), &format!("v{i}")));
        }
        h.push(r(4000, 4001, Some("v299")));
        assert!(check_register(&h).is_ok());
    }
}
