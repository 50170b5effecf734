//! A tar.gz snapshot (OSV record files). Input starting with the gzip magic is read as it is;
//! anything else is taken as an uncompressed tar and gzipped first, so that the fuzzer can
//! mutate tar headers and record files directly (seeds: `fuzz/seed.sh` unpacks the real
//! snapshots' gzip layer). Laws: the snapshot laws.
#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&[0x1f, 0x8b]) {
        tocsin_fuzz::read_and_check(data);
        return;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("writing to memory");
    let bytes = gz.finish().expect("writing to memory");
    tocsin_fuzz::read_and_check(&bytes);
});
