//! cloudconfig (being written)
