//! steps (being written)
