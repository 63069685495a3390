//! Unit tests of cloud-config parsing, planning and applying with an in-memory guest.
