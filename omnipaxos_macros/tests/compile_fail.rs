//! Misuses of `#[derive(Entry)]` fail to compile with a message that says what is expected.
//!
//! The expected compiler output is checked in next to each case in `tests/ui/*.stderr`.
//! After an intended change of a message, regenerate them with
//! `TRYBUILD=overwrite cargo test -p omnipaxos_macros --test compile_fail` and review the diff.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
