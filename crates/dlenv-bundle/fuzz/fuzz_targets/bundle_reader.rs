//! Arbitrary bytes into the bundle reader and the plain-archive checker: they must return an
//! error or a manifest, never panic, hang or allocate by announced sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dlenv_bundle::verify_reader(data);
    let _ = dlenv_bundle::check_archive(data);
});
