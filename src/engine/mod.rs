//! engine (being written)
