//! The status of an update operation as both backends store it (the storm guard's held
//! operations, see [`crate::Store::import_held`]).
use uuid::Uuid;

use crate::{Result, StoreError};

/// Status of an operation that counts as one of its updater's operations.
pub const ACCEPTED: &str = "accepted";
/// Status of the operation the storm guard holds (at most one per updater).
pub const HELD: &str = "held";
/// Status of a held operation a later import replaced.
pub const SUPERSEDED: &str = "superseded";

/// Why `op` (of `owner`, in `status`) cannot be accepted as `updater`'s held operation, if it
/// cannot: [`StoreError::Invalid`] naming the reason, or [`StoreError::Corrupt`] for a status
/// no backend writes.
pub fn check_acceptable(op: Uuid, updater: &str, owner: &str, status: &str) -> Result<()> {
    let why = if owner != updater {
        format!("it belongs to updater {owner:?}, not {updater:?}")
    } else {
        match status {
            HELD => return Ok(()),
            ACCEPTED => "it is already accepted".to_string(),
            SUPERSEDED => "a later import of the updater superseded it".to_string(),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "update operation {op}: unknown status {other:?}"
                )))
            }
        }
    };
    Err(StoreError::Invalid(format!(
        "cannot accept update operation {op}: {why}; only the updater's held operation can be \
         accepted"
    )))
}
