//! Arbitrary bytes into the bundle reader, the docker-archive writer and the plain-archive
//! checker: they must return an error or a result, never panic, hang or allocate by announced
//! sizes. Whatever `verify_reader` accepts is also streamed as `dlenv import` would (which
//! decompresses the layers and checks their diff_ids).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = dlenv_bundle::verify_reader(data) {
        let _ = dlenv_bundle::write_docker_archive_reader(data, &m, std::io::sink());
    }
    let _ = dlenv_bundle::check_archive(data);
});
