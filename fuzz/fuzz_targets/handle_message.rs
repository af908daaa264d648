//! Fuzz target: arbitrary bytes as a node's input (see `harness.rs`). `FUZZ_TRACE=1` prints
//! what a failing input does: `FUZZ_TRACE=1 cargo +nightly fuzz run handle_message <file>`.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run(data, std::env::var_os("FUZZ_TRACE").is_some());
});
