//! reroot: replace the root of LXD (or Incus) system containers from a template snapshot,
//! keeping their data on external filesystems, with every multi-step operation recorded in a
//! crash-safe journal so that it can be resumed or undone.
//!
//! Data flows one way: [`config`] files become resolved instances, the [`engine`] runs
//! [`steps`] against [`lxd`], [`storage`] and [`cloudconfig`], and records each transition in the
//! `journal` crate. While a run goes, [`progress`] shows what the engine tells (a live view, a
//! line per instance, an NDJSON event stream); [`run`] prunes what finished runs leave behind; [`view`] shows instances as they are.

pub mod cli;
pub mod cloudconfig;
pub mod config;
pub mod engine;
pub mod input;
pub mod lxd;
pub mod progress;
pub mod report;
pub mod run;
pub mod shell;
pub mod steps;
pub mod storage;
pub mod view;
