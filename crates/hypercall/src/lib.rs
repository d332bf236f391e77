//! cpupolicy hypercall (under construction).
