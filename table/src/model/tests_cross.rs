//! Unit tests of the cross-part rules a delta is checked by.
