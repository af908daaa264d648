use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
enum Command {
    Put(String),
    #[snapshot(omnipaxos::storage::NoSnapshot)]
    Delete(String),
}

fn main() {}
