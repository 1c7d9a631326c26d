//! The vocabulary (layer 1): plain data every other layer speaks — job specs, run records,
//! outcomes, the status and report documents, limits and clipping, durations and ages, the
//! printable-text gate. Construction and formatting only; no I/O, no clock reads, and no
//! import from any layer above (see docs/ARCHITECTURE.md).

pub mod duration;
pub mod printable;
pub mod report;
pub mod status;
