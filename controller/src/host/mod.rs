//! Thin adapters to the host: each does one thing and knows nothing of specs.

pub mod credentials;
pub mod files;
pub mod tls;
