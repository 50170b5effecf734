//! Inventory: a CycloneDX 1.2+ JSON SBOM.
//! Laws (`tocsin_fuzz::parse_inventory`): what parses is a claircore IndexReport that reads back
//! unchanged; parsing is deterministic; recognising the format from content parses the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin_model::inventory::InventoryFormat;

fuzz_target!(|data: &[u8]| {
    tocsin_fuzz::parse_inventory(data, InventoryFormat::Cyclonedx, None);
});
