//! The served certificate. Generated: a CA and server certificate kept
//! fresh (renewed 30 days before expiry). Provided: the user's pair
//! checked, then the checked bytes copied under the root.

use std::path::PathBuf;

use super::super::conditions::TlsOutcome;
use super::super::Error;
use crate::api::defaults::{Resolved, Tls};
use crate::host::{files, tls};
use crate::naming;

/// What serves, once the certificate is accepted.
pub struct Served {
    /// The CA clients trust, when the controller made it.
    pub ca_file: Option<PathBuf>,
    /// The served pair changed: whatever serves it restarts.
    pub changed: bool,
}

/// The certificate's outcome, and what serves; no [`Served`] when the
/// user's pair is refused, with nothing written.
pub fn ensure(r: &Resolved) -> Result<(TlsOutcome, Option<Served>), Error> {
    let tls_dir = naming::root::tls_dir(&r.root);
    let now = time::OffsetDateTime::now_utc();
    match &r.tls {
        Tls::Generated { extra_sans } => {
            let (dns, ips) = tls::default_sans(&r.hostname, extra_sans);
            let e = tls::ensure_generated(&tls_dir, &dns, &ips, now)?;
            if let Some(why) = &e.reason {
                tracing::info!(registry = %r.name, "{why}");
            }
            let outcome = TlsOutcome::Generated {
                hostname: r.hostname.clone(),
                not_after: e.not_after.date(),
            };
            let served = Served {
                changed: e.cert_changed || e.ca_changed,
                ca_file: Some(e.ca_file),
            };
            Ok((outcome, Some(served)))
        }
        Tls::Provided {
            cert_file,
            key_file,
            skip_hostname_check,
        } => {
            match tls::check_user_pair(cert_file, key_file, &r.hostname, *skip_hostname_check, now)
            {
                Ok(pair) => {
                    // The bytes checked, not the files read again.
                    let mut changed =
                        files::write_if_changed(&tls_dir.join("tls.crt"), &pair.cert, 0o644)?;
                    changed |= files::write_if_changed(&tls_dir.join("tls.key"), &pair.key, 0o600)?;
                    let outcome = TlsOutcome::Provided {
                        cert_file: cert_file.clone(),
                        not_after: pair.info.not_after.date(),
                    };
                    let served = Served {
                        ca_file: None,
                        changed,
                    };
                    Ok((outcome, Some(served)))
                }
                Err(problems) => Ok((TlsOutcome::Invalid(problems), None)),
            }
        }
    }
}
