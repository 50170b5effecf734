//! One OSV record as YAML (PyPA's advisory database), read from a `.yaml` file as `tocsin feeds
//! import` reads a directory. Laws: the snapshot laws (`tocsin_fuzz::check_snapshot`).
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("tocsin-fuzz-osv-{}.yaml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&[0x1f, 0x8b]) || data.starts_with(b"PK") {
        return; // archives have targets of their own
    }
    if std::fs::write(path(), data).is_err() {
        return;
    }
    match tocsin_feeds::read_path(tocsin_fuzz::UPDATER, path(), &tocsin_fuzz::no_progress) {
        Ok(s) => tocsin_fuzz::check_snapshot(&s),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
