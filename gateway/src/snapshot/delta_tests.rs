//! Property tests of build_delta (filled below).
