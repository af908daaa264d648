//! Writes a seed corpus for `handle_message`: real traffic of a 3-node cluster (election,
//! appends, a leader change, reads, a trim), encoded the way the target reads it, so that the
//! fuzzer starts from messages every phase of the protocol sends.
//!
//!   cargo +nightly run --manifest-path fuzz/Cargo.toml --bin make_corpus -- fuzz/corpus/handle_message

use bincode::Options;

#[allow(dead_code)]
mod harness;
use harness::{node, E};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/handle_message".into());
    std::fs::create_dir_all(&dir).expect("corpus directory");
    let codec = bincode::DefaultOptions::new().with_limit(1 << 16);
    let mut nodes: Vec<_> = (1..=3).map(node).collect();
    // Everything node 1 receives, as the target's input: [len][message] per message, with a
    // tick (160) after each round.
    let mut input = Vec::new();
    let mut files = 0;
    let mut buf = Vec::new();
    for round in 0..120u64 {
        if round == 10 {
            nodes[1].try_become_leader();
        }
        if round == 60 {
            nodes[2].try_become_leader();
        }
        if round % 3 == 0 {
            for n in nodes.iter_mut() {
                let _ = n.append(E(round));
            }
        }
        if round % 7 == 0 {
            let _ = nodes[0].request_read();
        }
        if round == 90 {
            let _ = nodes[2].trim(None);
        }
        for n in nodes.iter_mut() {
            n.tick();
            n.take_outgoing_messages(&mut buf);
        }
        for m in buf.drain(..) {
            let to = m.get_receiver() as usize;
            if to == 1 {
                let bytes = codec.serialize(&m).expect("encode");
                if bytes.len() < 160 {
                    input.push(bytes.len() as u8);
                    input.extend_from_slice(&bytes);
                }
            }
            nodes[to - 1].handle_incoming(m);
        }
        input.push(160);
        if round % 20 == 19 {
            std::fs::write(format!("{dir}/seed-{files:02}"), &input).expect("write a seed");
            files += 1;
        }
    }
    println!("wrote {files} seeds to {dir}");
}
