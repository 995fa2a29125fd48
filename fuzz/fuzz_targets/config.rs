//! The whole config path of `create` (annotation translation, parsing, validation, the plan of
//! mounts, devices, seccomp and cgroup) on arbitrary bytes: it may refuse them, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for v2 in [false, true] {
        if let Err((field, message)) = tally_runtime::bundle::check_config(data, v2, 4096) {
            assert!(
                !field.is_empty() && !message.is_empty(),
                "an error names its field and reason: {field:?}: {message:?}"
            );
        }
    }
});
