use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
#[snapshot()]
struct KeyValue {
    key: String,
}

fn main() {}
