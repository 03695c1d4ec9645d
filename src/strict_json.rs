//! JSON parsing that rejects duplicate object keys, for JOSE headers and claim sets
//! (RFC 7515 §5.2 and RFC 7519 §4 let a parser reject them; we must, since two
//! parsers that pick different duplicates disagree on what was signed).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A JSON value whose objects had no duplicate keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Strict, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            if map.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Strict(Value::Object(map)))
    }
}

/// Parses `bytes` as a JSON object, rejecting duplicate keys at any depth.
///
/// serde_json's recursion limit (128) bounds nesting, so hostile depth cannot
/// overflow the stack.
pub fn parse_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(map))) => Some(map),
        _ => None,
    }
}

/// Parses `bytes` as any JSON value, rejecting duplicate keys at any depth (GraphQL
/// request bodies: an object, or an array of them for a batch).
pub fn parse_value(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Strict>(bytes)
        .ok()
        .map(|Strict(v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_parsed_strictly() {
        let cases: Vec<(&str, bool)> = vec![
            (r#"{"a":1}"#, true),
            (r#"{"a":1,"b":[1,{"c":null}],"d":1.5,"e":true}"#, true),
            (r#"{"a":1,"a":2}"#, false),
            (r#"{"a":{"b":1,"b":1}}"#, false),
            (r#"{"a":[{"x":1,"x":1}]}"#, false),
            (r#"[1,2]"#, false),
            (r#""str""#, false),
            (r#"{"a":1} trailing"#, false),
            (r#"{"a":1"#, false),
            ("", false),
        ];
        for (input, ok) in cases {
            assert_eq!(parse_object(input.as_bytes()).is_some(), ok, "{input}");
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_crash() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_object(deep.as_bytes()).is_none());
    }
}
