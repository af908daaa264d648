//! The script commands on a [`Cluster`] (documented in `cluster.rs`).

use super::{cluster_config, kv, num, Cluster, Filter, Msg, Slot, V};
use omnipaxos::util::NodeId;
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::collections::VecDeque;

/// Runs script commands on a [`Cluster`].
#[derive(Default)]
pub(crate) struct Runner {
    cluster: Option<Cluster>,
}

fn one_node(args: &[&str]) -> Result<NodeId, String> {
    match args {
        [p] => num(p),
        _ => Err("expected one node".into()),
    }
}

impl crate::datadriven::Interpreter for Runner {
    fn run(&mut self, command: &str) -> Result<Vec<String>, String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let (name, args) = words.split_first().ok_or("empty command")?;
        if *name == "cluster" {
            self.cluster = Some(Cluster::new(args)?);
            return Ok(Vec::new());
        }
        let c = self
            .cluster
            .as_mut()
            .ok_or("the script must start with `cluster`")?;
        let out = c.command(name, args)?;
        c.check()?;
        Ok(out)
    }
}

impl Cluster {
    fn command(&mut self, name: &str, args: &[&str]) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        match name {
            "tick" => {
                let (who, rest) = args.split_first().ok_or("tick <who> [k] [quiet]")?;
                let who = self.who(who)?;
                let quiet = rest.contains(&"quiet");
                let k: u64 = match rest.iter().find(|a| **a != "quiet") {
                    Some(k) => num(k)?,
                    None => 1,
                };
                for i in 1..=k {
                    for &pid in &who {
                        let Some(node) = self.slots.get_mut(&pid).and_then(|s| s.node.as_mut())
                        else {
                            continue;
                        };
                        node.tick();
                        let prefix = if k > 1 {
                            format!("t{i}: ")
                        } else {
                            String::new()
                        };
                        out.extend(self.emit(pid, &prefix));
                    }
                }
                if quiet {
                    out.clear();
                }
            }
            "deliver" => {
                let f = Filter::parse(args)?;
                out = self.deliver(&f);
                if f.quiet {
                    out.clear();
                }
            }
            "stabilize" => {
                let f = Filter::parse(args)?;
                if f.limit.is_some() || f.skip > 0 {
                    return Err("stabilize takes no limit= or skip=".into());
                }
                let mut rounds = 0;
                while self.queue.iter().any(|m| f.matches(m)) {
                    rounds += 1;
                    if rounds > 1_000 {
                        return Err("the network did not stabilize in 1000 rounds".into());
                    }
                    out.extend(self.deliver(&f));
                }
                if f.quiet {
                    out.clear();
                }
            }
            "pending" => {
                let f = Filter::parse(args)?;
                out = self
                    .queue
                    .iter()
                    .filter(|m| f.matches(m) && !self.hidden(m))
                    .map(|m| m.to_string())
                    .collect();
                if out.is_empty() {
                    out.push("none".into());
                }
            }
            "drop" | "dup" => {
                let f = Filter::parse(args)?;
                let mut keep = VecDeque::new();
                let mut copies = Vec::new();
                let mut skipped = 0;
                for m in self.queue.drain(..) {
                    let mut take = f.matches(&m) && f.limit.map_or(true, |l| copies.len() < l);
                    if take && skipped < f.skip {
                        skipped += 1;
                        take = false;
                    }
                    if take {
                        copies.push(m.clone());
                        if name == "dup" {
                            keep.push_back(m);
                        }
                    } else {
                        keep.push_back(m);
                    }
                }
                for m in &copies {
                    out.push(format!("{name} {m}"));
                }
                if name == "dup" {
                    keep.extend(copies);
                }
                self.queue = keep;
            }
            "cut" | "isolate" | "heal" => {
                let mut links = Vec::new();
                for a in args {
                    if name == "isolate" {
                        let p: NodeId = num(a)?;
                        for &q in self.slots.keys() {
                            if q != p {
                                links.push((p, q));
                                links.push((q, p));
                            }
                        }
                    } else if let Some((x, y)) = a.split_once("->") {
                        links.push((num(x)?, num(y)?));
                    } else if let Some((x, y)) = a.split_once('-') {
                        let (x, y) = (num(x)?, num(y)?);
                        links.push((x, y));
                        links.push((y, x));
                    } else {
                        return Err(format!("bad link `{a}`"));
                    }
                }
                if name == "heal" {
                    if args.is_empty() {
                        self.cut.clear();
                    }
                    for l in links {
                        self.cut.remove(&l);
                    }
                } else {
                    if links.is_empty() {
                        return Err(format!("{name} needs links"));
                    }
                    self.cut.extend(links);
                    let cut = &self.cut;
                    let (lost, kept): (Vec<Msg>, Vec<Msg>) = self
                        .queue
                        .drain(..)
                        .partition(|m| cut.contains(&(m.get_sender(), m.get_receiver())));
                    self.queue = kept.into();
                    for m in lost {
                        if !self.hidden(&m) {
                            out.push(format!("lost {m}"));
                        }
                    }
                }
            }
            "append" => {
                let (pid, vals) = args.split_first().ok_or("append <node> <v>...")?;
                let pid = num(pid)?;
                for v in vals {
                    let v = V(num(v)?);
                    if let Err(e) = self.node(pid)?.append(v) {
                        out.push(format!("append {v:?}: error: {e:?}"));
                    }
                }
                out.extend(self.emit(pid, ""));
            }
            "flush" => {
                let pid = one_node(args)?;
                self.node(pid)?.flush_batch();
                out.extend(self.emit(pid, ""));
            }
            "crash" => {
                let pid = one_node(args)?;
                let slot = self.slots.get_mut(&pid).ok_or("no such node")?;
                let node = slot.node.take().ok_or("the node is down already")?;
                // What storage holds; anything the node had not written yet is lost.
                slot.storage = Some(node.get_storage().clone());
            }
            "restart" => {
                let pid = one_node(args)?;
                let slot = self.slots.get_mut(&pid).ok_or("no such node")?;
                let storage = slot.storage.take().ok_or("the node is not down")?;
                let cluster = slot.cluster.clone();
                let mut node = match self.build(pid, cluster, storage.clone()) {
                    Ok(n) => n,
                    Err(e) => {
                        self.slots.get_mut(&pid).expect("checked").storage = Some(storage);
                        return Ok(vec![e]);
                    }
                };
                node.fail_recovery();
                self.slots.get_mut(&pid).expect("checked").node = Some(node);
                out.extend(self.emit(pid, ""));
            }
            "reconfigure" => {
                let (pid, rest) = args.split_first().ok_or("reconfigure <node> id= nodes=")?;
                let pid = num(pid)?;
                let cfg = cluster_config(&kv(rest)?)?;
                if let Err(e) = self.node(pid)?.reconfigure(cfg, None) {
                    out.push(format!("error: {e:?}"));
                }
                out.extend(self.emit(pid, ""));
            }
            "start-next-config" => {
                let pid = one_node(args)?;
                let server = self.server_config(pid);
                let slot = self.slots.get_mut(&pid).ok_or("no such node")?;
                let node = slot.node.take().ok_or("the node is down")?;
                let next = node.is_reconfigured().map(|ss| ss.next_config);
                match node.start_next_config(server) {
                    Ok(n) => {
                        slot.node = Some(n);
                        slot.cluster = next.expect("a node that started its next config had one");
                        // Its log goes on at the stop sign's index: the decided index restarts
                        // there.
                        slot.decided = 0;
                        out.extend(self.emit(pid, ""));
                    }
                    Err((e, n)) => {
                        slot.node = Some(n);
                        out.push(format!("error: {e}"));
                    }
                }
            }
            "join" => {
                let (pid, rest) = args.split_first().ok_or("join <pid> id= nodes=")?;
                let pid: NodeId = num(pid)?;
                let cfg = cluster_config(&kv(rest)?)?;
                let node = match cfg
                    .clone()
                    .build_for_server(self.server_config(pid), MemoryStorage::default())
                {
                    Ok(n) => n,
                    Err(e) => return Ok(vec![format!("error: {e}")]),
                };
                self.slots.insert(
                    pid,
                    Slot {
                        cluster: cfg,
                        node: Some(node),
                        storage: None,
                        decided: 0,
                    },
                );
                out.extend(self.emit(pid, ""));
            }
            "trim" | "snapshot" => {
                let (pid, rest) = args.split_first().ok_or("trim/snapshot <node> [idx]")?;
                let pid = num(pid)?;
                let local = rest.contains(&"local");
                let idx = match rest.iter().find(|a| **a != "local") {
                    Some(i) => Some(num(i)?),
                    None => None,
                };
                let n = self.node(pid)?;
                let r = if name == "trim" {
                    if local {
                        return Err("trim has no `local`".into());
                    }
                    n.trim(idx)
                } else {
                    n.snapshot(idx, local)
                };
                if let Err(e) = r {
                    out.push(format!("error: {e:?}"));
                }
                out.extend(self.emit(pid, ""));
            }
            "read" => {
                let pid = one_node(args)?;
                let id = self.node(pid)?.request_read();
                out.push(format!("read {}", id.0));
                out.extend(self.emit(pid, ""));
            }
            "ready-reads" => {
                let pid = one_node(args)?;
                for r in self.node(pid)?.take_ready_reads() {
                    out.push(format!("read {} index={}", r.id.0, r.index));
                }
                if out.is_empty() {
                    out.push("none".into());
                }
            }
            "returned" => {
                let pid = one_node(args)?;
                for r in self.node(pid)?.take_returned_appends() {
                    out.push(format!("{:?} {:?}", r.entry, r.outcome));
                }
                if out.is_empty() {
                    out.push("none".into());
                }
            }
            "try-leader" => {
                let pid = one_node(args)?;
                self.node(pid)?.try_become_leader();
                out.extend(self.emit(pid, ""));
            }
            "set-priority" => {
                let [pid, p] = args else {
                    return Err("set-priority <node> <p>".into());
                };
                let pid = num(pid)?;
                let p = num(p)?;
                self.priorities.insert(pid, p);
                self.node(pid)?.set_priority(p);
            }
            "reconnected" => {
                let [pid, peer] = args else {
                    return Err("reconnected <node> <peer>".into());
                };
                let pid = num(pid)?;
                self.node(pid)?.reconnected(num(peer)?);
                out.extend(self.emit(pid, ""));
            }
            "status" | "log" => {
                let who = self.who(args.first().copied().unwrap_or("all"))?;
                for pid in who {
                    out.push(if name == "status" {
                        self.status(pid)
                    } else {
                        self.log(pid)
                    });
                }
            }
            "hide" => self.hidden.extend(args.iter().map(|s| s.to_string())),
            "show" => {
                if args == ["all"] {
                    self.hidden.clear();
                } else {
                    self.hidden.retain(|h| !args.contains(&h.as_str()));
                }
            }
            _ => return Err(format!("unknown command `{name}`")),
        }
        Ok(out)
    }
}
