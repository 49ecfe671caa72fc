//! Thin adapters to the host: each does one thing and knows nothing of specs.

pub mod files;
pub mod libpod;
pub mod podman;
pub mod systemd;
