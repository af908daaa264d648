//! Inputs the `handle_message` fuzz target (`fuzz/`) once failed on, replayed through the same
//! harness in every `cargo test` (no nightly toolchain needed). Add a failing input as a file in
//! `tests/fuzz_regressions/`, named after what it found.
//!
//! * `decided-stopsign-cleared-by-sync`: a node whose stop sign was decided (with an empty
//!   log) accepted, in a higher ballot, an `AcceptSync` without the stop sign, and cleared it:
//!   its decided index then pointed past its log. A sync now may only confirm a decided stop
//!   sign.

#[path = "../../fuzz/fuzz_targets/harness.rs"]
#[allow(dead_code)]
mod harness;

#[test]
fn inputs_the_fuzzer_once_failed_on() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("tests/fuzz_regressions") {
        let path = e.expect("a directory entry").path();
        let data = std::fs::read(&path).expect("an input");
        let r = std::panic::catch_unwind(|| harness::run(&data, false));
        assert!(r.is_ok(), "{} fails again", path.display());
        n += 1;
    }
    assert!(n > 0, "no inputs in {}", dir.display());
}
