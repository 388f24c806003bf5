//! Any bytes as JSON Lines through the parser and validation
//! (`feed_conformance::fuzz::jsonl_lines`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    feed_conformance::fuzz::jsonl_lines(data);
});
