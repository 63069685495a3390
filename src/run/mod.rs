//! The run protocol, below the CLI: how a run is started ([`start`]), resumed ([`resume`]) and
//! undone ([`undo`]), each deciding a [`pass::Pass`] that the engine carries out; what it was
//! started with ([`spec`]); which instances unfinished runs hold ([`lease`]); and what is done
//! to finished runs ([`prune`] deletes the retired old roots and filesystem snapshots that
//! succeeded rebuild runs leave behind, for one run or by a retention policy); and what an audit
//! extract of the journal leaves out ([`extract`]); what `launch` refuses ([`launch`]); and `configure`, cloud-config applied to a running
//! instance outside any run ([`configure`]).
//!
//! Each returns typed results and refusals; the CLI only connects, shows progress and prints.

pub mod configure;
pub mod daemons;
pub mod extract;
pub mod images;
pub mod launch;
pub mod lease;
pub mod pass;
pub mod profile_io;
pub mod prune;
pub mod resume;
pub mod spec;
pub mod start;
pub mod undo;

#[cfg(test)]
mod testing;
