use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
#[snapshot(1 + 2)]
struct KeyValue {
    key: String,
}

fn main() {}
