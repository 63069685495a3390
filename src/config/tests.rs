//! Unit tests of config resolution.
