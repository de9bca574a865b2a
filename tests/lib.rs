//! tests crate: see e2e/
