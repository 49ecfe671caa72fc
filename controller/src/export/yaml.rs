//! Small builders for the YAML documents exports write: mappings keep the
//! order they are built in (apiVersion, kind, metadata, spec, as kubectl
//! shows them), and base64 for Secret `data`.

use serde_yaml::{Mapping, Value};

/// A mapping in the order given.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(Value::from(k), v);
    }
    Value::Mapping(m)
}

/// A mapping of strings, in the order given.
pub fn strings<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(Value::from(k), Value::from(v));
    }
    Value::Mapping(m)
}

pub fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

pub fn seq(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Sequence(items.into_iter().collect())
}

/// One YAML document's text (no `---`).
pub fn to_text(v: &Value) -> Result<String, String> {
    serde_yaml::to_string(v).map_err(|e| format!("cannot write YAML: {e}"))
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648), as Secret `data` wants it.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc4648() {
        // RFC 4648, section 10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn mappings_keep_their_order() {
        let v = map([("kind", s("Pod")), ("apiVersion", s("v1"))]);
        assert_eq!(to_text(&v).unwrap(), "kind: Pod\napiVersion: v1\n");
    }
}
