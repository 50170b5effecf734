//! Inventory: a dpkg status file. The first line of the input is the distribution hint the
//! caller gives with it (`debian:12`, `ubuntu:22.04`, or os-release text with `\n` written as
//! `\\n`), the rest is the status file.
//! Laws (`tocsin_fuzz::parse_inventory`): what parses is a claircore IndexReport that reads back
//! unchanged; parsing is deterministic; recognising the format from content parses the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_model::inventory::InventoryFormat;

fuzz_target!(|data: &[u8]| {
    let (hint, status) = match data.iter().position(|&b| b == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (&[][..], data),
    };
    let Ok(hint) = std::str::from_utf8(hint) else {
        return;
    };
    let hint = hint.replace("\\n", "\n");
    tocsin_fuzz::parse_inventory(status, InventoryFormat::DpkgStatus, Some(&hint));
});
