//! The configuration reader: one JSON object at a time, unknown keys named first (usually
//! a typo worth naming before anything else), then typed getters whose errors name the
//! field path. Hand-written rather than `serde` derive: the derive code for these types
//! was ~60 KB of the module, this is a few.

use crate::error::{err, ConfigError};
use crate::token::claim_path::ClaimPath;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub(super) struct Fields<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Fields<'a> {
    pub(super) fn of(
        value: &'a Value,
        at: &str,
        known: &[&str],
    ) -> Result<Fields<'a>, ConfigError> {
        let Value::Object(map) = value else {
            return err(display_path(at), "expected an object");
        };
        let f = Fields {
            map,
            at: at.to_string(),
        };
        match map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => err(
                f.path(unknown),
                format!("unknown field; expected one of {}", known.join(", ")),
            ),
            None => Ok(f),
        }
    }

    pub(super) fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    /// The value of `key`; `null` counts as absent.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn required(&self, key: &'static str) -> Result<&'a Value, ConfigError> {
        match self.get(key) {
            Some(v) => Ok(v),
            None => err(self.path(key), "missing field"),
        }
    }

    pub(super) fn string(&self, key: &'static str) -> Result<String, ConfigError> {
        let v = self.required(key)?;
        as_string(v, &self.path(key))
    }

    pub(super) fn opt_string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            Some(v) => as_string(v, &self.path(key)).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn string_or(
        &self,
        key: &'static str,
        default: &str,
    ) -> Result<String, ConfigError> {
        Ok(self.opt_string(key)?.unwrap_or_else(|| default.to_string()))
    }

    pub(super) fn u64_or(&self, key: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(key) {
            Some(v) => v.as_u64().map_or_else(
                || err(self.path(key), "expected a non-negative integer"),
                Ok,
            ),
            None => Ok(default),
        }
    }

    pub(super) fn usize_or(&self, key: &'static str, default: usize) -> Result<usize, ConfigError> {
        let v = self.u64_or(key, default as u64)?;
        usize::try_from(v).map_or_else(|_| err(self.path(key), "too large"), Ok)
    }

    pub(super) fn bool_or(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => err(self.path(key), "expected true or false"),
            None => Ok(default),
        }
    }

    /// An array's items with their paths (`key[i]`); absent is empty.
    pub(super) fn items(&self, key: &'static str) -> Result<Vec<(String, &'a Value)>, ConfigError> {
        match self.get(key) {
            Some(v) => items(v, &self.path(key)),
            None => Ok(Vec::new()),
        }
    }

    /// Like [`Fields::items`], but the array must be there.
    pub(super) fn required_items(
        &self,
        key: &'static str,
    ) -> Result<Vec<(String, &'a Value)>, ConfigError> {
        items(self.required(key)?, &self.path(key))
    }

    pub(super) fn strings(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            Some(v) => strings(v, &self.path(key)),
            None => Ok(Vec::new()),
        }
    }

    pub(super) fn opt_strings(
        &self,
        key: &'static str,
    ) -> Result<Option<Vec<String>>, ConfigError> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        self.strings(key).map(Some)
    }

    /// An object's members with their paths (`key.member`); absent is empty.
    pub(super) fn members(
        &self,
        key: &'static str,
    ) -> Result<Vec<(String, String, &'a Value)>, ConfigError> {
        let at = self.path(key);
        match self.get(key) {
            Some(Value::Object(map)) => Ok(map
                .iter()
                .map(|(k, v)| (k.clone(), format!("{at}.{k}"), v))
                .collect()),
            Some(_) => err(at, "expected an object"),
            None => Ok(Vec::new()),
        }
    }

    pub(super) fn string_map(
        &self,
        key: &'static str,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        self.members(key)?
            .into_iter()
            .map(|(k, at, v)| Ok((k, as_string(v, &at)?)))
            .collect()
    }

    /// A nested object with these keys, when present.
    pub(super) fn object(
        &self,
        key: &'static str,
        known: &[&str],
    ) -> Result<Option<Fields<'a>>, ConfigError> {
        let at = self.path(key);
        self.get(key).map(|v| Fields::of(v, &at, known)).transpose()
    }

    pub(super) fn choice_or<T: Copy>(
        &self,
        key: &'static str,
        options: &[(&str, T)],
        default: T,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            Some(v) => choose(v, options, &self.path(key)),
            None => Ok(default),
        }
    }
}

/// Compiles a claim reference (a name, or a JSON Pointer starting with `/`) found at `at`.
pub(super) fn claim_path(text: &str, at: &str) -> Result<ClaimPath, ConfigError> {
    ClaimPath::parse(text).or_else(|m| err(at, m.0))
}

pub(super) fn display_path(at: &str) -> String {
    if at.is_empty() {
        "(root)".to_string()
    } else {
        at.to_string()
    }
}

pub(super) fn items<'a>(v: &'a Value, at: &str) -> Result<Vec<(String, &'a Value)>, ConfigError> {
    match v {
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{at}[{i}]"), v))
            .collect()),
        _ => err(at, "expected an array"),
    }
}

pub(super) fn strings(v: &Value, at: &str) -> Result<Vec<String>, ConfigError> {
    items(v, at)?
        .into_iter()
        .map(|(at, v)| as_string(v, &at))
        .collect()
}

pub(super) fn as_string(v: &Value, at: &str) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => err(at, "expected a string"),
    }
}

pub(super) fn choose<T: Copy>(
    v: &Value,
    options: &[(&str, T)],
    at: &str,
) -> Result<T, ConfigError> {
    let name = v.as_str().unwrap_or_default();
    match options.iter().find(|(n, _)| *n == name) {
        Some((_, t)) => Ok(*t),
        None => {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
            err(at, format!("expected one of {}", names.join(", ")))
        }
    }
}
