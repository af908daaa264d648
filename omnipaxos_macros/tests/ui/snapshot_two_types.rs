use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
#[snapshot(omnipaxos::storage::NoSnapshot, omnipaxos::storage::NoSnapshot)]
struct KeyValue {
    key: String,
}

fn main() {}
