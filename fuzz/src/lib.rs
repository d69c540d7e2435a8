//! Shared code of the fuzz targets; see `checks.rs` and `README.md`.

pub mod checks;
