//! The pod's own network (`render::Network`), recorded before it is
//! created and created before the pod unit first starts: the unit names it
//! and podman does not create networks on demand.

use super::super::{Context, Error};
use crate::api::defaults::Resolved;
use crate::host::podman::Podman;
use crate::naming;
use crate::render::Desired;
use crate::store::{self, record::Record};

/// Creates the network when it is missing. One of ours that exists is left
/// as it is (podman cannot change a network's options in place, and its
/// pod would have to go to recreate it), and recorded when an earlier run
/// made it but did not record it, so teardown removes it (it holds no
/// data); admission has refused one that is not ours.
pub async fn ensure(
    cx: &Context,
    podman: &Podman,
    rec: &mut Record,
    desired: &Desired,
    r: &Resolved,
) -> Result<(), Error> {
    let net = &desired.network;
    let found = podman.network(&net.name).await?;
    let ours = found
        .as_ref()
        .is_none_or(|f| naming::owned_by(&f.labels, &r.name));
    if ours && rec.networks.insert(net.name.clone()) {
        store::record::save(&cx.state_dir, rec)?;
    }
    if found.is_some() {
        return Ok(());
    }
    podman
        .create_network(&net.name, net.mtu, &naming::owner_labels(&r.name))
        .await?;
    tracing::info!(registry = %r.name, network = %net.name, mtu = net.mtu, "created network");
    Ok(())
}
