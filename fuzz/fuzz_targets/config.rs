//! The configuration file (Clair's notifier YAML plus `tocsin:`), parsed and validated with an
//! empty environment. Law: no panic; every error renders.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_fuzz::tocsin_program::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml(text, "fuzz.yaml", &|_| None) {
        Ok((config, warnings)) => {
            let _ = format!("{config:?} {warnings:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
