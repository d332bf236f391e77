//! cpupolicy topology (under construction).
