//! Documents that cannot drift: every Markdown file of the repository names only files
//! that exist (in backticks or as a relative link, anchors included) and configuration
//! fields the parser knows, refers to the decision's steps by name rather than number, and
//! the README keeps its first two commands and a minimal configuration that loads.
//!
//! Conventions the documents follow, so that a name can be checked:
//! - A repository path is a backticked word that starts with one of [`PATH_PREFIXES`] or
//!   is one of [`TOP_LEVEL_FILES`]; a trailing `:line` or `#anchor` is not part of it, and
//!   `*` matches within one path segment.
//! - A configuration field is a backticked dotted path from the top of the configuration,
//!   whose first segment is a top-level key: `graphql.hold_head`,
//!   `providers[].dpop.max_age_s`, `rules[i].match.graphql.fields` (`[]`, `[i]` or `[0]`
//!   for an element, `.*` for "any field of"). Metric names (`provider.<name>.…`),
//!   filter-state keys (`wasm.bearer_guard.outcome`) and Envoy's fields do not start with
//!   a top-level key, so they are not taken for configuration fields.
//! - A table whose first column is `field` lists the fields of one object, named by an
//!   HTML comment on the line above it: `<!-- fields: providers[].jwks -->`, or
//!   `<!-- fields: (top level) -->`.
//!
//! Which fields exist is the parser's answer, not a list kept here: a field's parent
//! object is given an unknown key in an otherwise valid configuration, and the parser's
//! "unknown field; expected one of …" names every key that object takes.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A backticked word starting with one of these names a repository path.
const PATH_PREFIXES: &[&str] = &["src/", "tests/", "envoy/", "docs/", ".ci/"];

/// Top-level files a document may name.
const TOP_LEVEL_FILES: &[&str] = &[
    "Makefile",
    "Cargo.toml",
    "Cargo.lock",
    "README.md",
    ".gitignore",
];

/// Folders whose Markdown is not checked: build output, the Python environment, git, and
/// the cargo-fuzz crate (a separate crate with generated corpus and artifacts).
const SKIPPED: &[&str] = &["target", ".venv", ".git", "tests/fuzz"];

/// Names that look like repository paths but are paths in other repositories: the test
/// vectors' provenance. (document, name)
const FOREIGN_PATHS: &[(&str, &str)] = &[
    (
        "tests/vectors/rfc/README.md",
        "src/identity/source/jws/appendix.a.2.1.rst",
    ),
    ("tests/vectors/rfc/README.md", "tests/rfc/test_rfc7520.py"),
];

/// The smallest valid configuration the field probes start from: one provider with a
/// JWKS, one rule.
fn base_config() -> Value {
    json!({
        "providers": [{"name": "p", "algorithms": ["RS256"],
            "jwks": {"cluster": "c", "authority": "a", "path": "/k"}}],
        "rules": [{"match": {"prefix": "/"}, "permissions": ["x"]}]
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What is wrong, where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    doc: String,
    line: usize,
    name: String,
    why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: {}",
            self.doc, self.line, self.name, self.why
        )
    }
}

#[test]
fn documents_name_only_files_and_fields_that_exist() {
    let root = repo();
    let mut docs = Vec::new();
    markdown_files(&root, &root, &mut docs);
    docs.sort();
    assert!(
        docs.iter().any(|d| d == "docs/configuration.md"),
        "no docs/configuration.md among {docs:?}"
    );
    let mut fields = Fields::default();
    let mut problems = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(root.join(doc)).expect("read document");
        problems.extend(check_document(&root, doc, &text, &mut fields));
    }
    let report: Vec<String> = problems.iter().map(Problem::to_string).collect();
    assert!(
        report.is_empty(),
        "{} problem(s) in the documents:\n{}",
        report.len(),
        report.join("\n")
    );
}

/// The checks themselves, on small documents with known problems: a check that finds
/// nothing is only worth something if it can find something.
#[test]
fn the_checks_find_what_they_should() {
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        // (document, text, the names reported)
        ("docs/x.md", "`src/lib.rs` and `Makefile`", vec![]),
        ("docs/x.md", "`src/nope.rs`", vec!["src/nope.rs"]),
        ("docs/x.md", "`src/lib.rs:12` `envoy/*.yaml`", vec![]),
        ("docs/x.md", "`envoy/*.yml`", vec!["envoy/*.yml"]),
        ("docs/x.md", "run `cargo test --test native tests/native/nope.rs`", vec!["tests/native/nope.rs"]),
        ("docs/x.md", "```sh\ncat src/nope.rs\n```", vec![]),
        ("docs/x.md", "[c](configuration.md) [r](../README.md#quick-start)", vec![]),
        ("docs/x.md", "[c](nope.md)", vec!["nope.md"]),
        ("docs/x.md", "[r](../README.md#no-such-heading)", vec!["../README.md#no-such-heading"]),
        ("docs/x.md", "[s](../../shared/STYLE.md)", vec!["../../shared/STYLE.md"]),
        ("docs/x.md", "# A b\n[a](#a-b) [z](#z)", vec!["#z"]),
        ("docs/x.md", "`graphql.hold_head`, `providers[].dpop.max_age_s`", vec![]),
        ("docs/x.md", "`rules[i].match.graphql.fields`, `providers[].claims.*`", vec![]),
        ("docs/x.md", "`graphql.bogus`", vec!["graphql.bogus"]),
        ("docs/x.md", "`providers[].dpop.bogus`", vec!["providers[].dpop.bogus"]),
        ("docs/x.md", "`providers.jwks`", vec!["providers.jwks"]),
        ("docs/x.md", "`wasm.bearer_guard.outcome` `provider.idp.keys_loaded`", vec![]),
        (
            "docs/x.md",
            "<!-- fields: providers[].jwks -->\n| field | meaning |\n|---|---|\n| `refresh_s` | x |\n| `bogus` / `path` | y |",
            vec!["providers[].jwks.bogus"],
        ),
        ("docs/x.md", "| field | meaning |\n|---|---|\n| `mode` | x |", vec!["field"]),
        ("docs/x.md", "as step 7 says; steps 2-12", vec!["step 7", "steps 2"]),
        ("docs/x.md", "the *signature* step", vec![]),
    ];
    let root = repo();
    let mut fields = Fields::default();
    for (doc, text, want) in cases {
        let found: Vec<String> = check_document(&root, doc, text, &mut fields)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(found, want, "{text:?}");
    }
}

/// CI and users run the README's first two commands.
#[test]
fn the_readme_starts_with_make_demo_and_make_test() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let block = fenced_blocks(&readme)
        .into_iter()
        .next()
        .expect("a code block in the README");
    let commands: Vec<&str> = block
        .1
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .take(2)
        .collect();
    assert_eq!(
        commands,
        ["make demo", "make test"],
        "README.md:{}",
        block.0
    );
}

/// The README's minimal configuration loads.
#[test]
fn the_readmes_minimal_configuration_loads() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## A minimal configuration\n")
        .nth(1)
        .expect("a section \"## A minimal configuration\" in README.md");
    let (_, json) = fenced_blocks(section)
        .into_iter()
        .find(|(_, b)| b.trim_start().starts_with('{'))
        .expect("a JSON block in the minimal configuration section");
    if let Err(e) = bearer_guard::parse_config(json.as_bytes(), &|_| None) {
        panic!("README.md, A minimal configuration: {e}");
    }
}

/// Every Markdown file under `dir`, as paths relative to `root`.
fn markdown_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).expect("read directory");
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = relative(root, &path);
        if SKIPPED.contains(&rel.as_str()) {
            continue;
        }
        if path.is_dir() {
            markdown_files(root, &path, out);
        } else if rel.ends_with(".md") {
            out.push(rel);
        }
    }
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every check on one document.
fn check_document(root: &Path, doc: &str, text: &str, fields: &mut Fields) -> Vec<Problem> {
    let md = Markdown::read(text);
    let problem = |line: usize, name: &str, why: String| Problem {
        doc: doc.to_string(),
        line,
        name: name.to_string(),
        why,
    };
    let mut problems = Vec::new();

    for span in &md.spans {
        // Paths: every word of a code span, so that a path inside a command counts too.
        for word in span.text.split_whitespace() {
            let Some(path) = repository_path(word) else {
                continue;
            };
            if FOREIGN_PATHS.contains(&(doc, word)) || path_exists(root, path) {
                continue;
            }
            problems.push(problem(
                span.line,
                word,
                "no such file or folder in the repository".into(),
            ));
        }
        // Fields: a whole code span that is a dotted path from a top-level key.
        if let Some(path) = FieldPath::parse(&span.text) {
            if path.is_dotted() && fields.top_level().contains(&path.segments[0].name) {
                if let Err(why) = fields.check(&path) {
                    problems.push(problem(span.line, &span.text, why));
                }
            }
        }
    }

    for link in &md.links {
        if let Err(why) = check_link(root, doc, &md, &link.text) {
            problems.push(problem(link.line, &link.text, why));
        }
    }

    for table in &md.field_tables {
        let Some(prefix) = &table.prefix else {
            problems.push(problem(
                table.line,
                "field",
                "a field table needs `<!-- fields: OBJECT -->` on the line above it".into(),
            ));
            continue;
        };
        for (line, names) in &table.rows {
            for name in names {
                let full = match prefix.as_str() {
                    "" => name.clone(),
                    p => format!("{p}.{name}"),
                };
                let checked = FieldPath::parse(&full)
                    .ok_or_else(|| "not a field path".to_string())
                    .and_then(|p| fields.check(&p));
                if let Err(why) = checked {
                    problems.push(problem(*line, &full, why));
                }
            }
        }
    }

    for (line, words) in step_numbers(&md.prose) {
        problems.push(problem(
            line,
            &words,
            "refer to a decision step by its name (README, How a request is decided)".into(),
        ));
    }
    problems.sort_by_key(|p| p.line);
    problems
}

/// The repository path a backticked word names, if it names one.
fn repository_path(word: &str) -> Option<&str> {
    let named =
        PATH_PREFIXES.iter().any(|p| word.starts_with(p)) || TOP_LEVEL_FILES.contains(&word);
    if !named {
        return None;
    }
    // `src/x.rs:12` and `docs/x.md#anchor` name the file.
    let word = word.split('#').next().unwrap_or(word);
    let word = match word.split_once(':') {
        Some((path, line))
            if line
                .chars()
                .all(|c| c.is_ascii_digit() || c == ':' || c == '-') =>
        {
            path
        }
        _ => word,
    };
    Some(word)
}

/// Whether `path` (relative to the repository, `*` matching within one segment) exists.
fn path_exists(root: &Path, path: &str) -> bool {
    let mut candidates = vec![root.to_path_buf()];
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let mut next = Vec::new();
        for dir in &candidates {
            if segment.contains('*') {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                for e in entries.flatten() {
                    if wildcard(segment, &e.file_name().to_string_lossy()) {
                        next.push(e.path());
                    }
                }
            } else if dir.join(segment).exists() {
                next.push(dir.join(segment));
            }
        }
        candidates = next;
    }
    !candidates.is_empty()
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| wildcard(rest, &tail[i..]))
        }
    }
}

/// A relative link resolves to a file of the repository, and its anchor to a heading.
fn check_link(root: &Path, doc: &str, md: &Markdown, target: &str) -> Result<(), String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return Ok(());
    }
    let (file, anchor) = match target.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (target, None),
    };
    let headings = if file.is_empty() {
        md.anchors.clone()
    } else {
        let base = Path::new(doc).parent().unwrap_or(Path::new(""));
        let mut resolved = PathBuf::new();
        for c in base.join(file).components() {
            match c {
                Component::ParentDir => resolved
                    .pop()
                    .then_some(())
                    .ok_or("points outside the repository")?,
                Component::Normal(n) => resolved.push(n),
                _ => {}
            }
        }
        let path = root.join(&resolved);
        if !path.exists() {
            return Err(format!(
                "no such file: {}",
                resolved.to_string_lossy().replace('\\', "/")
            ));
        }
        match (anchor, std::fs::read_to_string(&path)) {
            (Some(_), Ok(text)) => Markdown::read(&text).anchors,
            _ => Vec::new(),
        }
    };
    match anchor {
        Some(a) if !headings.iter().any(|h| h == a) => Err(format!(
            "no heading with this anchor; the document has {}",
            headings.join(", ")
        )),
        _ => Ok(()),
    }
}

/// `step 7`, `steps 2-12`: decision steps by number, which drift when a step is added.
fn step_numbers(prose: &[(usize, String)]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (line, text) in prose {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        for pair in words.windows(2) {
            let word = pair[0].trim_start_matches(|c: char| !c.is_alphanumeric());
            if (word == "step" || word == "steps")
                && pair[1].starts_with(|c: char| c.is_ascii_digit())
            {
                let n: String = pair[1].chars().take_while(char::is_ascii_digit).collect();
                found.push((*line, format!("{word} {n}")));
            }
        }
    }
    found
}

/// The parts of a Markdown document the checks read.
#[derive(Default)]
struct Markdown {
    /// Code spans outside fenced blocks, with the line they start on.
    spans: Vec<Span>,
    /// Link targets outside code.
    links: Vec<Span>,
    /// Lines of prose: code spans and fenced blocks blanked.
    prose: Vec<(usize, String)>,
    /// The anchors of the headings, as GitHub makes them.
    anchors: Vec<String>,
    /// Tables whose first column is `field`.
    field_tables: Vec<FieldTable>,
}

struct Span {
    line: usize,
    text: String,
}

struct FieldTable {
    line: usize,
    /// The object the rows belong to (`""`: the top level); `None` without a marker.
    prefix: Option<String>,
    /// Each row's line and the code spans of its first cell.
    rows: Vec<(usize, Vec<String>)>,
}

impl Markdown {
    fn read(text: &str) -> Markdown {
        let mut md = Markdown::default();
        // Fenced blocks become blank lines, so line numbers stay and nothing in them counts.
        let mut in_fence: Option<String> = None;
        let mut lines: Vec<String> = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim_start();
            let fence: String = trimmed
                .chars()
                .take_while(|&c| c == '`' || c == '~')
                .collect();
            match &in_fence {
                Some(open) if trimmed.starts_with(open.as_str()) && trimmed.trim() == fence => {
                    in_fence = None;
                    lines.push(String::new());
                }
                Some(_) => lines.push(String::new()),
                None if fence.len() >= 3 => {
                    in_fence = Some(fence);
                    lines.push(String::new());
                }
                None => lines.push(line.to_string()),
            }
        }
        md.scan_inline(&lines);
        md.scan_blocks(&lines);
        md
    }

    /// Code spans (which may run over a line end, not over a blank line) and links.
    fn scan_inline(&mut self, lines: &[String]) {
        let joined = lines.join("\n");
        let line_at = |offset: usize| joined[..offset].matches('\n').count() + 1;
        let bytes = joined.as_bytes();
        let mut prose = String::with_capacity(joined.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'`' {
                let run = bytes[i..].iter().take_while(|&&b| b == b'`').count();
                if let Some(end) = closing_run(&joined, i + run, run) {
                    let content = &joined[i + run..end];
                    if !content.contains("\n\n") {
                        let text = content.replace('\n', " ");
                        // One space on each side is padding (CommonMark).
                        let text = match text.strip_prefix(' ').and_then(|t| t.strip_suffix(' ')) {
                            Some(t) if !t.trim().is_empty() => t.to_string(),
                            _ => text,
                        };
                        self.spans.push(Span {
                            line: line_at(i),
                            text,
                        });
                        // Keep the line structure of the prose.
                        prose.extend(joined[i..end + run].chars().map(|c| {
                            if c == '\n' {
                                '\n'
                            } else {
                                ' '
                            }
                        }));
                        i = end + run;
                        continue;
                    }
                }
                prose.push_str(&joined[i..i + run]);
                i += run;
                continue;
            }
            let c = joined[i..].chars().next().unwrap_or(' ');
            prose.push(c);
            i += c.len_utf8();
        }
        // Links: `](target)` in prose.
        let mut from = 0;
        while let Some(at) = prose[from..].find("](") {
            let start = from + at + 2;
            let Some(len) = prose[start..].find(')') else {
                break;
            };
            let target = prose[start..start + len].trim().to_string();
            if !target.is_empty() && !target.contains(char::is_whitespace) {
                self.links.push(Span {
                    line: prose[..start].matches('\n').count() + 1,
                    text: target,
                });
            }
            from = start + len;
        }
        self.prose = prose
            .lines()
            .enumerate()
            .map(|(n, l)| (n + 1, l.to_string()))
            .collect();
    }

    /// Headings and field tables, line by line.
    fn scan_blocks(&mut self, lines: &[String]) {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut n = 0;
        while n < lines.len() {
            let line = lines[n].trim();
            if let Some(heading) = line.strip_prefix('#') {
                let slug = slug(heading.trim_start_matches('#'));
                let count = seen.entry(slug.clone()).or_insert(0);
                self.anchors.push(match *count {
                    0 => slug,
                    k => format!("{slug}-{k}"),
                });
                *count += 1;
            }
            let is_separator = |l: &str| l.trim().starts_with("|-") || l.trim().starts_with("|:-");
            if line.starts_with('|')
                && first_cell(line).trim() == "field"
                && lines.get(n + 1).is_some_and(|l| is_separator(l))
            {
                let prefix = n
                    .checked_sub(1)
                    .and_then(|p| lines[p].trim().strip_prefix("<!-- fields:"))
                    .and_then(|r| r.strip_suffix("-->"))
                    .map(|p| match p.trim() {
                        "(top level)" => String::new(),
                        p => p.to_string(),
                    });
                let mut table = FieldTable {
                    line: n + 1,
                    prefix,
                    rows: Vec::new(),
                };
                let mut r = n + 2;
                while r < lines.len() && lines[r].trim().starts_with('|') {
                    let cell = first_cell(lines[r].trim());
                    let names = Markdown::read(cell)
                        .spans
                        .into_iter()
                        .map(|s| s.text)
                        .collect();
                    table.rows.push((r + 1, names));
                    r += 1;
                }
                self.field_tables.push(table);
                n = r;
                continue;
            }
            n += 1;
        }
    }
}

/// Where the run of exactly `run` backticks that closes a code span opened before `from`
/// starts.
fn closing_run(text: &str, from: usize, run: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let n = bytes[i..].iter().take_while(|&&b| b == b'`').count();
            if n == run {
                return Some(i);
            }
            i += n;
        } else {
            i += 1;
        }
    }
    None
}

/// A table row's first cell: up to the first `|` outside a code span.
fn first_cell(row: &str) -> &str {
    let body = row.strip_prefix('|').unwrap_or(row);
    let mut in_code = false;
    let mut prev = ' ';
    for (i, c) in body.char_indices() {
        match c {
            '`' => in_code = !in_code,
            '|' if !in_code && prev != '\\' => return &body[..i],
            _ => {}
        }
        prev = c;
    }
    body
}

/// A heading's anchor as GitHub makes it: lower case, letters, digits, `-` and `_` kept,
/// spaces to `-`, everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Fenced code blocks: the line each starts on and its content.
fn fenced_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut open {
            Some((start, fence, body)) => {
                if trimmed.trim() == fence.as_str() {
                    blocks.push((*start, std::mem::take(body)));
                    open = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
            None => {
                let fence: String = trimmed.chars().take_while(|&c| c == '`').collect();
                if fence.len() >= 3 {
                    open = Some((n + 1, fence, String::new()));
                }
            }
        }
    }
    blocks
}

/// A configuration field's path: `providers[].dpop.max_age_s`.
#[derive(Debug, Clone)]
struct FieldPath {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
struct Segment {
    name: String,
    /// `name[]`, `name[i]` or `name[0]`: an element of the array `name`.
    element: bool,
}

impl FieldPath {
    /// `None` when `text` is not written as a field path. A trailing `.*` ("any field
    /// of") names its object.
    fn parse(text: &str) -> Option<FieldPath> {
        let text = text.strip_suffix(".*").unwrap_or(text);
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (name, element) = match part.split_once('[') {
                Some((name, index)) => {
                    let index = index.strip_suffix(']')?;
                    let valid = index.is_empty()
                        || index == "i"
                        || index.chars().all(|c| c.is_ascii_digit());
                    if !valid {
                        return None;
                    }
                    (name, true)
                }
                None => (part, false),
            };
            let mut chars = name.chars();
            let first = chars.next()?;
            if !(first.is_ascii_alphabetic() || first == '_')
                || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return None;
            }
            segments.push(Segment {
                name: name.to_string(),
                element,
            });
        }
        Some(FieldPath { segments })
    }

    /// Written as a path (with a `.` or an element), not a single word.
    fn is_dotted(&self) -> bool {
        self.segments.len() > 1 || self.segments.iter().any(|s| s.element)
    }
}

/// The configuration parser's fields, asked once per object.
#[derive(Default)]
struct Fields {
    known: BTreeMap<String, Result<Vec<String>, String>>,
}

impl Fields {
    fn top_level(&mut self) -> Vec<String> {
        self.keys_of(&[]).unwrap_or_default()
    }

    /// Whether the parser knows the field at `path`.
    fn check(&mut self, path: &FieldPath) -> Result<(), String> {
        let Some((last, parents)) = path.segments.split_last() else {
            return Err("empty".into());
        };
        let known = self.keys_of(parents)?;
        if !known.contains(&last.name) {
            return Err(format!(
                "not a configuration field; {} has {}",
                display(parents),
                known.join(", ")
            ));
        }
        // `name[]` must be an array and plain `name` must not: probe one level down.
        if last.element {
            self.keys_of(&path.segments).map(|_| ())
        } else {
            Ok(())
        }
    }

    /// The keys the object at `parents` takes, from the parser's own "expected one of".
    fn keys_of(&mut self, parents: &[Segment]) -> Result<Vec<String>, String> {
        let at = display(parents);
        if let Some(known) = self.known.get(&at) {
            return known.clone();
        }
        let known = probe(parents);
        self.known.insert(at, known.clone());
        known
    }
}

/// The path as the documents write it (`providers[].jwks`), or "the top level".
fn display(segments: &[Segment]) -> String {
    if segments.is_empty() {
        return "the top level".into();
    }
    let parts: Vec<String> = segments
        .iter()
        .map(|s| format!("{}{}", s.name, if s.element { "[]" } else { "" }))
        .collect();
    format!("`{}`", parts.join("."))
}

/// Puts an unknown key into the object at `parents` of the base configuration (creating
/// it, element 0 of an array) and returns the keys the parser says that object takes.
fn probe(parents: &[Segment]) -> Result<Vec<String>, String> {
    const PROBE: &str = "__probe__";
    let mut cfg = base_config();
    let mut at = Vec::new();
    let mut object = cfg.as_object_mut().ok_or("base configuration")?;
    for s in parents {
        let entry = object.entry(s.name.clone()).or_insert_with(|| {
            if s.element {
                json!([{}])
            } else {
                json!({})
            }
        });
        let value = if s.element {
            let Value::Array(items) = entry else {
                return Err(format!("{} is not an array: write it without []", s.name));
            };
            if items.is_empty() {
                items.push(json!({}));
            }
            at.push(format!("{}[0]", s.name));
            &mut items[0]
        } else {
            at.push(s.name.clone());
            entry
        };
        object = match value {
            Value::Object(m) => m,
            Value::Array(_) => return Err(format!("{} is an array: write {}[]", s.name, s.name)),
            _ => return Err(format!("{} is not an object", s.name)),
        };
    }
    object.insert(PROBE.into(), Value::Bool(true));
    at.push(PROBE.into());
    let expected = at.join(".");
    let bytes = serde_json::to_vec(&cfg).map_err(|e| e.to_string())?;
    match bearer_guard::parse_config(&bytes, &|_| None) {
        Err(e) if e.field == expected => e
            .message
            .strip_prefix("unknown field; expected one of ")
            .map(|list| list.split(", ").map(str::to_string).collect())
            .ok_or_else(|| format!("the parser said {e}")),
        Err(e) => Err(format!(
            "the parser does not read {} as an object of fields ({e})",
            display(parents)
        )),
        Ok(_) => Err(format!(
            "the parser accepted an unknown key in {}",
            display(parents)
        )),
    }
}
