//! mirror-registry: a reconciling controller for a container image mirror
//! registry on one host. See ARCHITECTURE.md for the module map.

pub mod host;
pub mod spec_file;
