//! A zip snapshot (osv.dev's `all.zip` shape). Input starting with `PK` is read as it is;
//! anything else is a list of files, `NAME\nCONTENT` separated by `\0\0\0`, zipped (stored or
//! deflated) first, so that the fuzzer reaches the records inside past zip's CRC checks.
//! Laws: the snapshot laws.
#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;
use zip::write::SimpleFileOptions;

fn zip_of(data: &[u8]) -> Option<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let sep: &[u8] = b"\0\0\0";
    let mut rest = data;
    let mut i = 0u32;
    loop {
        let (entry, tail) = match rest.windows(sep.len()).position(|x| x == sep) {
            Some(p) => (&rest[..p], Some(&rest[p + sep.len()..])),
            None => (rest, None),
        };
        let (name, content) = match entry.iter().position(|&b| b == b'\n') {
            Some(p) => (&entry[..p], &entry[p + 1..]),
            None => (entry, &[][..]),
        };
        let name = String::from_utf8_lossy(name);
        let method = if i % 2 == 0 {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default().compression_method(method);
        if name.ends_with('/') {
            w.add_directory(name.as_ref(), options).ok()?;
        } else {
            w.start_file(name.as_ref(), options).ok()?;
            w.write_all(content).ok()?;
        }
        i += 1;
        match tail {
            Some(t) => rest = t,
            None => break,
        }
    }
    w.finish().ok().map(|c| c.into_inner())
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"PK") {
        tocsin_fuzz::read_and_check(data);
        return;
    }
    if let Some(bytes) = zip_of(data) {
        tocsin_fuzz::read_and_check(&bytes);
    }
});
