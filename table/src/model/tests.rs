//! Unit tests of the model: digest, apply, to_table.
