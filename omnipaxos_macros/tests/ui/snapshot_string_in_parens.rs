use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
#[snapshot("KVSnapshot")]
struct KeyValue {
    key: String,
}

fn main() {}
