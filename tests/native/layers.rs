//! The layout's import rule, checked on the sources: every top-level module of `src/`
//! belongs to one layer, and a module imports only from its own layer or lower ones —
//! leaves → domain → config → pipeline → core → hosts — with no cycle between the
//! modules of one layer. `make lint` runs this test; `docs/development.md` maps the
//! layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer and its top-level modules, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "error",
            "algorithm",
            "encoding",
            "strict_json",
            "bounded_cache",
            "request",
            "reply",
            "shared",
        ],
    ),
    (
        "domain",
        &[
            "token",
            "keys",
            "verify",
            "authz",
            "sender",
            "graphql",
            "mcp",
            "account",
            "introspection",
            "revocation",
            "resource",
        ],
    ),
    ("config", &["config"]),
    ("pipeline", &["pipeline"]),
    ("core", &["worker"]),
    ("hosts", &["filter", "native", "explain"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for the crate roots).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The top-level modules a file names with `crate::…`, outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // `bearer_guard::crate::` never occurs; skip `$crate::` of macros.
            let before = &rest[..at];
            rest = &rest[at + "crate::".len()..];
            if before.ends_with('$') || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
        // `use crate::{a, b::c}` groups.
        if let Some(at) = code.find("crate::{") {
            let group = &code[at + "crate::{".len()..];
            for item in group.split(['}', ',']) {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// Every module-to-module edge of `src/`: importer → imported → the files that import.
fn edges() -> BTreeMap<(String, String), Vec<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source readable");
        for to in imports(&text) {
            if to != from {
                let name = file.strip_prefix(&src).unwrap_or(&file);
                edges
                    .entry((from.clone(), to))
                    .or_default()
                    .push(name.display().to_string());
            }
        }
    }
    edges
}

#[test]
fn every_module_has_a_layer_and_imports_only_downwards() {
    let mut problems = Vec::new();
    for ((from, to), files) in edges() {
        match (layer_of(&from), layer_of(&to)) {
            (None, _) => problems.push(format!(
                "module {from} has no layer (tests/native/layers.rs)"
            )),
            (_, None) => problems.push(format!("{from} imports {to}, which has no layer")),
            (Some(a), Some(b)) if b > a => problems.push(format!(
                "back-edge: {from} ({}) imports {to} ({}) in {}",
                LAYERS[a].0,
                LAYERS[b].0,
                files.join(", ")
            )),
            _ => {}
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn no_two_modules_import_each_other_even_through_others() {
    let edges = edges();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from.clone()).or_default().insert(to.clone());
    }
    // Depth-first search for a cycle, reporting its path.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            let files: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    let key = (w[0].clone(), w[1].clone());
                    format!("{} → {}: {}", w[0], w[1], edges[&key].join(", "))
                })
                .collect();
            panic!("import cycle {}\n{}", cycle.join(" → "), files.join("\n"));
        }
    }
}

#[test]
fn the_check_sees_imports_and_back_edges() {
    let text = "use crate::pipeline::Decision;\n// crate::worker in a comment\nuse crate::{reply, token::Scheme};\nlet x = $crate::m;";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["pipeline", "reply", "token"]);
    assert!(layer_of("pipeline") > layer_of("token"));
}
