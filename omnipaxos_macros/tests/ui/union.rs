use omnipaxos::macros::Entry;

#[derive(Clone, Copy)]
#[derive(Entry)]
union Bits {
    int: u32,
    float: f32,
}

impl std::fmt::Debug for Bits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bits")
    }
}

fn main() {}
