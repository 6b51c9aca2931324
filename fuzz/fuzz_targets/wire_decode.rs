//! Coverage-guided fuzzing of the wire decoder (engine/src/protocol/wire).
//!
//! Arbitrary bytes must never panic the decoder. Whatever decodes must
//! round-trip through the encoder (decode(encode(m)) == m, and encoding
//! the result again gives the same bytes), as the proptest
//! `every_message_round_trips` says of every message. Tighter limits may
//! only refuse a frame, never read it differently.

#![no_main]

use engine::protocol::wire::{decode, encode, WireLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let limits = WireLimits::default();
    let decoded = decode(bytes, &limits);
    if let Ok(msg) = &decoded {
        let encoded = encode(msg);
        assert_eq!(
            decode(&encoded, &limits).as_ref(),
            Ok(msg),
            "a decoded message does not survive encode and decode: {msg:?}"
        );
        assert_eq!(
            encode(msg),
            encoded,
            "encoding the same message twice differs"
        );
    }
    let tight = WireLimits {
        max_message_bytes: 512,
        max_text_bytes: 16,
        max_items: 4,
        max_depth: 3,
    };
    if let Ok(msg) = decode(bytes, &tight) {
        assert_eq!(
            decoded.as_ref(),
            Ok(&msg),
            "tighter limits read the frame differently"
        );
    }
});
