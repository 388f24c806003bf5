//! Any bytes ingested into the memory backend through the append path
//! (`feed_conformance::fuzz::ingest_memory`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    feed_conformance::fuzz::ingest_memory(data);
});
