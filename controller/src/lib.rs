//! mirror-registry: a reconciling controller for a container image mirror
//! registry on one host. See ARCHITECTURE.md for the module map.

pub mod api;
pub mod cli;
pub mod export;
pub mod host;
pub mod naming;
pub mod observability;
pub mod reconcile;
pub mod render;
pub mod settings;
pub mod spec_file;
pub mod telemetry;
