//! Workspace-level end-to-end tests live in `tests/`; [`flow`] sets up the
//! whole delivery flow for them and for the demo (`src/bin/demo.rs`).

pub mod flow;
pub mod kustomize;
