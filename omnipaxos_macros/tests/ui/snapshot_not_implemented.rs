use omnipaxos::macros::Entry;
use serde::{Deserialize, Serialize};

/// Clone, Debug and serde, but no `impl Snapshot<KeyValue> for NotASnapshot`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NotASnapshot;

#[derive(Clone, Debug, Entry)]
#[snapshot(NotASnapshot)]
struct KeyValue {
    key: String,
}

fn main() {}
