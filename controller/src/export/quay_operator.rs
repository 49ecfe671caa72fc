//! `--to quay-operator` (quay engine): a `QuayRegistry` (`quay.redhat.com/v1`)
//! and its config bundle Secret.
//!
//! The bundle's config.yaml is the one this host runs (render's, with the
//! kept keys), less what the operator manages: the database (its
//! PostgreSQL: `DB_URI`), Redis (`BUILDLOGS_REDIS`, `USER_EVENTS_REDIS`)
//! and, unless the cluster provides object storage, the storage, which the
//! user must supply (`objectstorage` unmanaged, `DISTRIBUTED_STORAGE_*`
//! left for them). `SECRET_KEY` and `DATABASE_SECRET_KEY` stay this host's:
//! Quay encrypts database fields with them, so a database moved over stays
//! readable. `SERVER_HOSTNAME` is the spec's hostname, which the host's
//! certificate names; the bundle carries that pair as `ssl.cert`/`ssl.key`
//! (`tls` unmanaged), so clients keep trusting the same CA.
//!
//! The bundle uses `stringData`, so config.yaml can be edited in place
//! before it is applied.

use serde_yaml::{Mapping, Value};

use super::yaml::{map, s, seq, strings, to_text};
use super::{labels, rendered_file, Document, Facts};
use crate::naming;
use crate::render::quay;

/// Keys of this host's config.yaml the operator provides itself.
pub const OPERATOR_MANAGED: &[&str] = &["DB_URI", "BUILDLOGS_REDIS", "USER_EVENTS_REDIS"];
/// Keys of this host's storage (LocalStorage in the pod's /datastorage),
/// which mean nothing on a cluster.
pub const STORAGE_KEYS: &[&str] = &[
    "DISTRIBUTED_STORAGE_CONFIG",
    "DISTRIBUTED_STORAGE_PREFERENCE",
    "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS",
];

pub fn bundle_name(name: &str) -> String {
    format!("{name}-config-bundle")
}

/// The components the QuayRegistry declares: (kind, managed).
pub fn components(managed_storage: bool) -> Vec<(&'static str, bool)> {
    vec![
        ("quay", true),
        ("postgres", true),
        ("redis", true),
        // This host runs no scanner (FEATURE_SECURITY_SCANNER: false).
        ("clair", false),
        ("clairpostgres", false),
        ("objectstorage", managed_storage),
        // The host's certificate, in the bundle.
        ("tls", false),
        ("route", true),
        ("mirror", true),
        ("horizontalpodautoscaler", true),
    ]
}

const STORAGE_HELP: &str = "\
# objectstorage is unmanaged: supply your object storage before applying, e.g.
# DISTRIBUTED_STORAGE_CONFIG:
#   default:
#     - S3Storage
#     - host: s3.example.org
#       s3_bucket: quay
#       s3_access_key: ...
#       s3_secret_key: ...
#       storage_path: /datastorage/registry
# DISTRIBUTED_STORAGE_PREFERENCE: [default]
# DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS: []
";

/// The bundle's config.yaml.
pub fn config(f: &Facts) -> Result<String, String> {
    let r = &f.resolved;
    if f.quay_secrets.is_none() {
        return Err("the quay engine's kept keys are not known".into());
    }
    let path = naming::root::quay_config_dir(&r.root).join(quay::CONFIG_FILE);
    let text = rendered_file(&f.desired, &path)?;
    if text.contains(quay::PLACEHOLDER) {
        return Err("render left a placeholder where a kept key goes".into());
    }
    let mut m: Mapping = serde_yaml::from_str(text)
        .map_err(|e| format!("{}: not a YAML mapping: {e}", path.display()))?;
    for k in OPERATOR_MANAGED {
        m.shift_remove(*k);
    }
    // The host's storage is a directory in its pod: the cluster's is the
    // operator's (managed) or the user's to supply.
    for k in STORAGE_KEYS {
        m.shift_remove(*k);
    }
    // Behind the cluster's route, on 443: the name without the port.
    m.insert(s("SERVER_HOSTNAME"), s(&r.hostname));
    let mut out = format!(
        "# Quay's config.yaml from MirrorRegistry {name} on this host, for the Quay Operator.\n\
         # SECRET_KEY and DATABASE_SECRET_KEY are this host's: keep them, or what Quay\n\
         # encrypted in its database can no longer be read. The operator provides the\n\
         # database and Redis.\n",
        name = r.name
    );
    if !f.managed_storage {
        out.push_str(STORAGE_HELP);
    }
    out.push_str(&to_text(&Value::Mapping(m))?);
    Ok(out)
}

pub fn documents(f: &Facts) -> Result<Vec<Document>, String> {
    let r = &f.resolved;
    let name = r.name.as_str();
    let bundle = map([
        ("apiVersion", s("v1")),
        ("kind", s("Secret")),
        (
            "metadata",
            map([("name", s(bundle_name(name))), ("labels", labels(name))]),
        ),
        ("type", s("Opaque")),
        (
            "stringData",
            strings([
                ("config.yaml", config(f)?),
                ("ssl.cert", f.tls.cert.clone()),
                ("ssl.key", f.tls.key.content.clone()),
            ]),
        ),
    ]);
    let registry = map([
        ("apiVersion", s("quay.redhat.com/v1")),
        ("kind", s("QuayRegistry")),
        (
            "metadata",
            map([("name", s(name)), ("labels", labels(name))]),
        ),
        (
            "spec",
            map([
                ("configBundleSecret", s(bundle_name(name))),
                (
                    "components",
                    seq(components(f.managed_storage)
                        .into_iter()
                        .map(|(kind, managed)| {
                            map([("kind", s(kind)), ("managed", Value::from(managed))])
                        })),
                ),
            ]),
        ),
    ]);
    let storage = if f.managed_storage {
        "the operator provides object storage (--managed-storage)."
    } else {
        "objectstorage is unmanaged: add your storage to the bundle's config.yaml first."
    };
    Ok(vec![
        Document {
            kind: "Secret",
            name: bundle_name(name),
            text: format!(
                "# MirrorRegistry {name}: Quay's config bundle (config.yaml, ssl.cert, ssl.key).\n# {storage}\n{}",
                to_text(&bundle)?
            ),
            secret: Some("Quay's SECRET_KEY, DATABASE_SECRET_KEY and the TLS private key"),
        },
        Document {
            kind: "QuayRegistry",
            name: name.to_string(),
            text: format!(
                "# MirrorRegistry {name} under the Quay Operator; {storage}\n{}",
                to_text(&registry)?
            ),
            secret: None,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, facts};
    use super::*;

    fn bundle_config(f: &Facts) -> Mapping {
        let docs = documents(f).unwrap();
        let v: Value = serde_yaml::from_str(&docs[0].text).unwrap();
        serde_yaml::from_str(v["stringData"]["config.yaml"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn the_bundle_keeps_the_keys_and_drops_what_the_operator_manages() {
        let f = facts("quay", "");
        let c = bundle_config(&f);
        assert_eq!(c["SERVER_HOSTNAME"], s("mirror.example.org"));
        assert_eq!(c["SECRET_KEY"], s(testing::SECRET_KEY));
        assert_eq!(c["DATABASE_SECRET_KEY"], s(testing::DB_KEY));
        for k in OPERATOR_MANAGED.iter().chain(STORAGE_KEYS) {
            assert!(!c.contains_key(*k), "{k}");
        }
        // Everything else is the host's, key for key.
        let host: Mapping = serde_yaml::from_str(&f.desired.files[0].content).unwrap();
        for (k, v) in &host {
            let k = k.as_str().unwrap();
            if k != "SERVER_HOSTNAME"
                && !OPERATOR_MANAGED.contains(&k)
                && !STORAGE_KEYS.contains(&k)
            {
                assert_eq!(c.get(k), Some(v), "{k}");
            }
        }
        // ... and in the host's order.
        let order = |m: &Mapping| -> Vec<String> {
            m.keys()
                .map(|k| k.as_str().unwrap().to_string())
                .filter(|k| c.contains_key(k.as_str()) && host.contains_key(k.as_str()))
                .collect()
        };
        assert_eq!(order(&c), order(&host));
        let text = &documents(&f).unwrap()[0].text;
        assert!(!text.contains(testing::REDIS_PW), "Redis is the operator's");
    }

    #[test]
    fn storage_is_unmanaged_unless_the_cluster_provides_it() {
        let mut f = facts("quay", "");
        let docs = documents(&f).unwrap();
        assert!(docs[0].secret.is_some());
        assert!(docs[1].secret.is_none());
        let qr: Value = serde_yaml::from_str(&docs[1].text).unwrap();
        let comps = qr["spec"]["components"].as_sequence().unwrap();
        let storage = comps
            .iter()
            .find(|c| c["kind"] == s("objectstorage"))
            .unwrap();
        assert_eq!(storage["managed"], Value::from(false));
        assert!(docs[0].text.contains("objectstorage is unmanaged"));
        f.managed_storage = true;
        let qr: Value = serde_yaml::from_str(&documents(&f).unwrap()[1].text).unwrap();
        let comps = qr["spec"]["components"].as_sequence().unwrap();
        assert!(comps
            .iter()
            .any(|c| c["kind"] == s("objectstorage") && c["managed"] == true));
    }
}
