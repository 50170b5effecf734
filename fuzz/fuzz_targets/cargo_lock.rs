//! Inventory: a Cargo.lock (v1–v4).
//! Laws (`tocsin_fuzz::parse_inventory`): what parses is a claircore IndexReport that reads back
//! unchanged; parsing is deterministic; recognising the format from content parses the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_model::inventory::InventoryFormat;

fuzz_target!(|data: &[u8]| {
    tocsin_fuzz::parse_inventory(data, InventoryFormat::CargoLock, None);
});
