//! A GraphQL request (transport + document → root fields): the first byte picks the
//! transport (POST application/json, POST application/graphql, GET with the query in the
//! URL), the rest is the body or query. Must never panic; and a document the fast reader
//! accepts must be accepted by the reference parser (apollo-parser's syntax tree) with the
//! same root fields — never more lenient, never other fields.
#![no_main]

use bearer_guard::{document_fields, reference_root_fields, root_fields, GraphqlLimits};
use bearer_guard::{Body, Headers, Request};
use libfuzzer_sys::fuzz_target;

fn request(method: &str, path: String, content_type: &str, body: &[u8]) -> Request {
    Request {
        method: method.into(),
        path,
        headers: Headers::from_pairs([("content-type", content_type.to_string())]),
        body: Body::Read(body.to_vec()),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&transport, rest)) = data.split_first() else {
        return;
    };
    let limits = GraphqlLimits::default();
    let req = match transport % 3 {
        0 => request("POST", "/graphql".into(), "application/json", rest),
        1 => request("POST", "/graphql".into(), "application/graphql", rest),
        _ => {
            let query: String = rest
                .iter()
                .map(|b| format!("%{b:02X}"))
                .collect();
            request("GET", format!("/graphql?query={query}"), "", b"")
        }
    };
    let _ = root_fields(&req, rest, &limits);
    // The differential check, on documents without commas: they are ignored tokens, and
    // apollo-parser refuses `...,F` where the specification reads `... F`.
    let Ok(doc) = std::str::from_utf8(rest) else {
        return;
    };
    if doc.contains(',') {
        return;
    }
    for name in [None, Some("Q")] {
        if let Ok(ours) = document_fields(doc, name, &limits) {
            match reference_root_fields(doc, name, &limits) {
                Ok(theirs) => assert_eq!(ours, theirs, "other fields for {doc:?} {name:?}"),
                Err(e) => panic!("more lenient than the reference for {doc:?} {name:?}: {e}"),
            }
        }
    }
});
