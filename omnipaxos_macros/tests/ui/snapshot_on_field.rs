use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
struct KeyValue {
    #[snapshot(omnipaxos::storage::NoSnapshot)]
    key: String,
}

fn main() {}
