//! The user's spec files on disk: splicing status back into them, writing
//! them safely, and watching their directory.

pub mod read;
pub mod splice;
pub mod watch;
pub mod write;
