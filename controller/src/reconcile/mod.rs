//! The controller: a queue of names, and the reconcile function that
//! converges one registry to its spec file.

pub mod queue;
