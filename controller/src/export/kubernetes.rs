//! `--to kubernetes`: the CNCF registry on a cluster, as this host runs it:
//! the config this host runs as a ConfigMap, the TLS pair (and the CA that
//! signed it) and the htpasswd file as Secrets, a PersistentVolumeClaim
//! for the data, a Deployment of one replica (Recreate: the claim is
//! ReadWriteOnce) and a Service on the same port.
//!
//! No namespace is set: `kubectl apply -n NAMESPACE -f ...` chooses it.

use serde_yaml::Value;

use super::yaml::{base64, map, s, seq, strings, to_text};
use super::{image_of, labels, rendered_file, Document, Facts};
use crate::naming;
use crate::render::distribution;

/// Mode of the files Secret volumes give the registry: owner read only.
const SECRET_MODE: u32 = 0o400;

pub fn config_map_name(name: &str) -> String {
    format!("{name}-config")
}
pub fn tls_secret_name(name: &str) -> String {
    format!("{name}-tls")
}
pub fn htpasswd_secret_name(name: &str) -> String {
    format!("{name}-htpasswd")
}
pub fn claim_name(name: &str) -> String {
    format!("{name}-storage")
}

/// A Service's name must be a DNS-1035 label (a letter first); a registry
/// name is a DNS-1123 label, which may start with a digit.
pub fn service_name(name: &str) -> String {
    if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.to_string()
    } else {
        let mut n = format!("registry-{name}");
        n.truncate(63);
        n.trim_end_matches('-').to_string()
    }
}

fn metadata(name: &str, registry: &str) -> Value {
    map([("name", s(name)), ("labels", labels(registry))])
}

pub fn documents(f: &Facts) -> Result<Vec<Document>, String> {
    let r = &f.resolved;
    let name = r.name.as_str();
    super::check_quantity(&f.storage_request)?;
    let htpasswd = f
        .htpasswd
        .as_ref()
        .ok_or("the htpasswd file is not known")?;
    let config_path = naming::root::config_dir(&r.root).join(distribution::CONFIG_FILE);
    let config = rendered_file(&f.desired, &config_path)?;
    let image = image_of(&f.desired, distribution::COMPONENT)?;

    let config_map = map([
        ("apiVersion", s("v1")),
        ("kind", s("ConfigMap")),
        ("metadata", metadata(&config_map_name(name), name)),
        ("data", strings([("config.yml", config.to_string())])),
    ]);
    let mut tls_data = vec![
        ("tls.crt", base64(f.tls.cert.as_bytes())),
        ("tls.key", base64(f.tls.key.content.as_bytes())),
    ];
    if let Some(ca) = &f.tls.ca {
        tls_data.push(("ca.crt", base64(ca.as_bytes())));
    }
    let tls_secret = map([
        ("apiVersion", s("v1")),
        ("kind", s("Secret")),
        ("metadata", metadata(&tls_secret_name(name), name)),
        ("type", s("kubernetes.io/tls")),
        ("data", strings(tls_data)),
    ]);
    let htpasswd_secret = map([
        ("apiVersion", s("v1")),
        ("kind", s("Secret")),
        ("metadata", metadata(&htpasswd_secret_name(name), name)),
        ("type", s("Opaque")),
        (
            "data",
            strings([("htpasswd", base64(htpasswd.content.as_bytes()))]),
        ),
    ]);
    let claim = map([
        ("apiVersion", s("v1")),
        ("kind", s("PersistentVolumeClaim")),
        ("metadata", metadata(&claim_name(name), name)),
        (
            "spec",
            map([
                ("accessModes", seq([s("ReadWriteOnce")])),
                (
                    "resources",
                    map([(
                        "requests",
                        strings([("storage", f.storage_request.clone())]),
                    )]),
                ),
            ]),
        ),
    ]);
    let probe = |initial: u32, period: u32| {
        map([
            ("tcpSocket", map([("port", s("https"))])),
            ("initialDelaySeconds", Value::from(initial)),
            ("periodSeconds", Value::from(period)),
        ])
    };
    let mount = |volume: &str, path: &str, read_only: bool| {
        map([
            ("name", s(volume)),
            ("mountPath", s(path)),
            ("readOnly", Value::from(read_only)),
        ])
    };
    let secret_volume = |volume: &str, secret: String, keys: &[&str]| {
        map([
            ("name", s(volume)),
            (
                "secret",
                map([
                    ("secretName", s(secret)),
                    ("defaultMode", Value::from(SECRET_MODE)),
                    (
                        "items",
                        seq(keys.iter().map(|k| map([("key", s(*k)), ("path", s(*k))]))),
                    ),
                ]),
            ),
        ])
    };
    let deployment = map([
        ("apiVersion", s("apps/v1")),
        ("kind", s("Deployment")),
        ("metadata", metadata(name, name)),
        (
            "spec",
            map([
                ("replicas", Value::from(1)),
                ("strategy", map([("type", s("Recreate"))])),
                ("selector", map([("matchLabels", labels(name))])),
                (
                    "template",
                    map([
                        ("metadata", map([("labels", labels(name))])),
                        (
                            "spec",
                            map([
                                (
                                    "containers",
                                    seq([map([
                                        ("name", s(distribution::COMPONENT)),
                                        ("image", s(image)),
                                        ("imagePullPolicy", s("IfNotPresent")),
                                        (
                                            "ports",
                                            seq([map([
                                                ("name", s("https")),
                                                (
                                                    "containerPort",
                                                    Value::from(distribution::CONTAINER_PORT),
                                                ),
                                                ("protocol", s("TCP")),
                                            ])]),
                                        ),
                                        (
                                            "volumeMounts",
                                            seq([
                                                mount("config", "/etc/docker/registry", true),
                                                mount("tls", "/certs", true),
                                                mount("auth", "/auth", true),
                                                mount("storage", "/var/lib/registry", false),
                                            ]),
                                        ),
                                        ("readinessProbe", probe(2, 10)),
                                        ("livenessProbe", probe(15, 20)),
                                    ])]),
                                ),
                                (
                                    "volumes",
                                    seq([
                                        map([
                                            ("name", s("config")),
                                            (
                                                "configMap",
                                                map([("name", s(config_map_name(name)))]),
                                            ),
                                        ]),
                                        secret_volume(
                                            "tls",
                                            tls_secret_name(name),
                                            &["tls.crt", "tls.key"],
                                        ),
                                        secret_volume(
                                            "auth",
                                            htpasswd_secret_name(name),
                                            &["htpasswd"],
                                        ),
                                        map([
                                            ("name", s("storage")),
                                            (
                                                "persistentVolumeClaim",
                                                map([("claimName", s(claim_name(name)))]),
                                            ),
                                        ]),
                                    ]),
                                ),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
    ]);
    let service = map([
        ("apiVersion", s("v1")),
        ("kind", s("Service")),
        ("metadata", metadata(&service_name(name), name)),
        (
            "spec",
            map([
                ("type", s("ClusterIP")),
                ("selector", labels(name)),
                (
                    "ports",
                    seq([map([
                        ("name", s("https")),
                        ("port", Value::from(r.port)),
                        ("targetPort", s("https")),
                        ("protocol", s("TCP")),
                    ])]),
                ),
            ]),
        ),
    ]);

    let header = |what: &str| format!("# MirrorRegistry {name}: {what}\n");
    Ok(vec![
        Document {
            kind: "ConfigMap",
            name: config_map_name(name),
            text: header("the registry's config.yml, as this host runs it.")
                + &to_text(&config_map)?,
            secret: None,
        },
        Document {
            kind: "Secret",
            name: tls_secret_name(name),
            text: header("the TLS pair this host serves, and the CA that signed it.")
                + &to_text(&tls_secret)?,
            secret: Some("the TLS private key"),
        },
        Document {
            kind: "Secret",
            name: htpasswd_secret_name(name),
            text: header("the htpasswd file: this host's users and password hashes.")
                + &to_text(&htpasswd_secret)?,
            secret: Some("the password hashes"),
        },
        Document {
            kind: "PersistentVolumeClaim",
            name: claim_name(name),
            text: header("the image data; copy it in with skopeo sync (docs/outgrowing.md).")
                + &to_text(&claim)?,
            secret: None,
        },
        Document {
            kind: "Deployment",
            name: name.to_string(),
            text: header("one registry, as this host's unit runs it.") + &to_text(&deployment)?,
            secret: None,
        },
        Document {
            kind: "Service",
            name: service_name(name),
            text: header(&format!(
                "port {} to the registry; expose it with a LoadBalancer, an Ingress or a Route named {}.",
                r.port, r.hostname
            )) + &to_text(&service)?,
            secret: None,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, facts};
    use super::*;

    fn docs() -> Vec<(Document, Value)> {
        documents(&facts("distribution", ""))
            .unwrap()
            .into_iter()
            .map(|d| {
                let v = serde_yaml::from_str(&d.text).unwrap();
                (d, v)
            })
            .collect()
    }

    #[test]
    fn the_config_is_the_one_this_host_runs() {
        let f = facts("distribution", "");
        let d = docs();
        let cm = &d[0].1;
        assert_eq!(
            cm["data"]["config.yml"].as_str().unwrap(),
            distribution::config(&f.resolved).unwrap()
        );
    }

    #[test]
    fn secrets_carry_the_hosts_files_and_say_so() {
        let d = docs();
        let kinds: Vec<String> = d.iter().map(|(d, _)| d.id()).collect();
        assert_eq!(
            kinds,
            [
                "ConfigMap/m1-config",
                "Secret/m1-tls",
                "Secret/m1-htpasswd",
                "PersistentVolumeClaim/m1-storage",
                "Deployment/m1",
                "Service/m1"
            ]
        );
        let secrets: Vec<&str> = d
            .iter()
            .filter(|(d, _)| d.secret.is_some())
            .map(|(d, _)| d.kind)
            .collect();
        assert_eq!(secrets, ["Secret", "Secret"]);
        assert_eq!(
            d[1].1["data"]["tls.key"],
            s(base64(testing::KEY.as_bytes()))
        );
        assert_eq!(
            d[2].1["data"]["htpasswd"],
            s(base64(testing::HTPASSWD.as_bytes()))
        );
        for (doc, _) in d.iter().filter(|(d, _)| d.secret.is_none()) {
            assert!(!doc.text.contains(&base64(testing::KEY.as_bytes())));
            assert!(!doc.text.contains("SECRETHASH"));
        }
    }

    #[test]
    fn the_service_serves_the_same_port() {
        let d = docs();
        assert_eq!(d[5].1["spec"]["ports"][0]["port"], Value::from(8443));
        assert_eq!(service_name("1abc"), "registry-1abc");
        assert_eq!(service_name("abc"), "abc");
        assert!(service_name(&format!("1{}", "a".repeat(62))).len() <= 63);
    }
}
