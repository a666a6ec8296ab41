//! Arbitrary bytes as everything a peer ever sends a worker: through the
//! frame check, the message reader and a traversal of each message as an
//! RPC `Message` (see `capactor::fuzzing::read_frames`).
//!
//! `cargo fuzz run frames` (add `-s none` on a stable toolchain).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the message size limit: the worker's default,
    // or ones small enough for the fuzzer to cross. 1001 bytes is not a
    // whole number of words.
    let Some((&pick, stream)) = data.split_first() else {
        return;
    };
    let max_message_bytes = match pick % 4 {
        0 => 64 << 20,
        1 => 4096,
        2 => 64,
        _ => 1001,
    };
    let read = capactor::fuzzing::read_frames(stream, max_message_bytes);
    assert!(read.refused <= read.messages);
});
