//! lxd (being written)
