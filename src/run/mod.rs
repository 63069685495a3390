//! What is done to finished runs, below the CLI: [`prune`] deletes the retired old roots (and
//! filesystem snapshots) that succeeded rebuild runs leave behind, for one run or by a
//! retention policy.

pub mod lease;
pub mod prune;
pub mod spec;
