//! The beancounter annotation parser and translator: the first byte picks the resource, the
//! rest is the value, given to `parse` alone and through `apply` on a config that carries it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_beancounters::annotations::{apply, parse, PREFIX, RESOURCES};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(value) = std::str::from_utf8(rest) else { return };
    let (resource, unit) = RESOURCES[pick as usize % RESOURCES.len()];
    for page in [4096, 65536] {
        if let Ok(s) = parse(unit, value, page) {
            if let (Some(b), Some(l)) = (s.barrier, s.limit) {
                assert!(b <= l, "barrier above limit accepted");
            }
        }
        let mut config = serde_json::json!({
            "annotations": {format!("{PREFIX}{resource}"): value},
            "linux": {"resources": {}},
            "process": {"args": ["true"]},
        });
        let _ = apply(&mut config, pick & 1 == 0, page);
    }
});
