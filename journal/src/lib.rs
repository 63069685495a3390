//! The reroot journal: an event-sourced, crash-safe record of every run.
//!
//! This crate knows events and bytes; it knows nothing of LXD or of what a step means.
