//! The port this registry publishes, held by another program: nothing is
//! started (reason `PortConflict`), what runs keeps running.

use std::net::{Ipv4Addr, SocketAddr};

use super::super::{Context, Error};
use crate::api::defaults::Resolved;
use crate::host::files;
use crate::host::systemd::UnitState;
use crate::render::Desired;

/// Whether something other than our pod holds `port`.
fn port_taken(port: u16) -> bool {
    std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).is_err()
}

/// Whether the port this registry should publish is held by another
/// program. Our own running pod holding it (its unit file publishes that
/// port) is not a conflict.
pub fn conflict(
    cx: &Context,
    desired: &Desired,
    r: &Resolved,
    pod_state: &UnitState,
) -> Result<bool, Error> {
    let publish = format!("--publish {}:", r.port);
    let ours = pod_state.active_state.is_active()
        && files::read_optional(&cx.unit_dir.join(&desired.pod_unit.name))?
            .is_some_and(|b| String::from_utf8_lossy(&b).contains(&publish));
    Ok(!ours && port_taken(r.port))
}
