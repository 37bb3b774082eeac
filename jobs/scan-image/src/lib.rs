//! scan-image: trivy findings as GitLab merge-request security reports, with
//! a severity gate. `main.rs` parses flags and calls [`scan::run`].

pub mod cli;
pub mod finding;
pub mod report;
pub mod scan;
pub mod severity;
pub mod summary;
pub mod suppress;
pub mod trivy;
