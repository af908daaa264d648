//! Criterion benchmark of `write_atomically`: batches of 1, 100 and 1,000 entries with 8 B and
//! 256 B payloads, on `PersistentStorage` (default `Durability::Immediate`), on `MemoryStorage`,
//! and the floor: the same encoded bytes appended to a plain file with one `fsync` per batch.
//!
//! The throughput is reported in entries per second; one iteration is one batch, i.e. one
//! durable write (one sync point). `examples/storage_bench.rs` prints the same comparison as a
//! table with the ratios.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use omnipaxos::storage::{Entry, NoSnapshot, Storage, StorageOp};
use omnipaxos_storage::{
    memory_storage::MemoryStorage,
    persistent_storage::{PersistentStorage, PersistentStorageConfig},
};
use serde::{Deserialize, Serialize};
use std::{fs::OpenOptions, io::Write, time::Duration};

/// The benchmark's entry: a payload of a fixed size.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BenchEntry {
    payload: Vec<u8>,
}

impl Entry for BenchEntry {
    type Snapshot = NoSnapshot;
}

fn entries(n: usize, payload: usize) -> Vec<BenchEntry> {
    (0..n)
        .map(|i| BenchEntry {
            payload: vec![i as u8; payload],
        })
        .collect()
}

fn ops(n: usize, payload: usize, decided: usize) -> Vec<StorageOp<BenchEntry>> {
    vec![
        StorageOp::AppendEntries(entries(n, payload)),
        StorageOp::SetDecidedIndex(decided),
    ]
}

fn write_atomically(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut case = 0;
    for &payload in &[8usize, 256] {
        for &n in &[1usize, 100, 1000] {
            case += 1;
            let mut g = c.benchmark_group(format!("write_atomically/{n}x{payload}B"));
            g.throughput(Throughput::Elements(n as u64));

            // The floor: the same bytes, one fsync per batch.
            let mut bytes = Vec::new();
            for e in entries(n, payload) {
                bytes.extend(bincode::serialize(&e).expect("encode"));
            }
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join(format!("plain-{case}")))
                .expect("plain file");
            g.bench_function("plain_file_fsync", |b| {
                b.iter(|| {
                    file.write_all(&bytes).expect("write");
                    file.sync_all().expect("fsync");
                })
            });

            // A fresh MemoryStorage per batch, so that memory does not grow without bound.
            g.bench_function("memory_storage", |b| {
                b.iter_batched(
                    || (MemoryStorage::default(), ops(n, payload, n)),
                    |(mut s, ops)| {
                        s.write_atomically(ops).expect("write");
                        s
                    },
                    BatchSize::NumIterations(16),
                )
            });

            let cfg = PersistentStorageConfig::with_path(dir.path().join(format!("store-{case}")));
            let mut s = PersistentStorage::<BenchEntry>::try_new(cfg).expect("storage");
            let mut decided = 0;
            g.bench_function("persistent_storage", |b| {
                b.iter_batched(
                    || {
                        decided += n;
                        ops(n, payload, decided)
                    },
                    |ops| s.write_atomically(ops).expect("write"),
                    BatchSize::NumIterations(16),
                )
            });
            g.finish();
        }
    }
}

/// The criterion group (in a module of its own: the macro makes an undocumented `pub fn`).
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        targets = write_atomically
    }
}
criterion_main!(group::benches);
