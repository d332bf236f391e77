//! cpupolicy policy (under construction).
