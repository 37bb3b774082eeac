//! trivy: its JSON report format and running it as a child process.

pub mod report;
pub mod runner;
