//! `wasm-trim IN OUT [--keep-responses]`: writes IN (cargo's artifact) to OUT with the
//! callbacks of [`bearer_guard::UNIMPLEMENTED_CALLBACKS`] removed from its exports (but
//! [`bearer_guard::RESPONSE_CALLBACKS`] with `--keep-responses`: the module that filters
//! MCP lists), every other section copied byte for byte. Run by `make build`; refuses a module that lacks one of them (a
//! renamed callback would otherwise be silently kept) or that is not a bearer-guard module.

use bearer_guard::{RESPONSE_CALLBACKS, UNIMPLEMENTED_CALLBACKS};
use std::process::ExitCode;
use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
use wasmparser::{ExternalKind, Parser, Payload};

fn kind(k: ExternalKind) -> ExportKind {
    match k {
        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

fn trim(bytes: &[u8], keep_responses: bool) -> Result<(Vec<u8>, usize), String> {
    let removable = |name: &str| {
        UNIMPLEMENTED_CALLBACKS.contains(&name)
            && !(keep_responses && RESPONSE_CALLBACKS.contains(&name))
    };
    let mut module = Module::new();
    let mut removed = Vec::new();
    let mut kept_request_headers = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader {
                    let e = export.map_err(|e| e.to_string())?;
                    if removable(e.name) {
                        removed.push(e.name.to_string());
                    } else {
                        kept_request_headers |= e.name == "proxy_on_request_headers";
                        exports.export(e.name, kind(e.kind), e.index);
                    }
                }
                module.section(&exports);
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    let range = usize::try_from(range.start).unwrap_or(usize::MAX)
                        ..usize::try_from(range.end).unwrap_or(usize::MAX);
                    let data = bytes.get(range).ok_or("section out of bounds")?;
                    module.section(&RawSection { id, data });
                }
            }
        }
    }
    if !kept_request_headers {
        return Err("not a proxy-wasm HTTP filter (no proxy_on_request_headers)".into());
    }
    if let Some(missing) = UNIMPLEMENTED_CALLBACKS
        .iter()
        .filter(|c| removable(c))
        .find(|c| !removed.iter().any(|r| r == *c))
    {
        return Err(format!(
            "{missing} is not exported: already trimmed, or the SDK renamed it"
        ));
    }
    Ok((module.finish(), removed.len()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, output, keep_responses) = match args.as_slice() {
        [input, output] => (input, output, false),
        [input, output, flag] if flag == "--keep-responses" => (input, output, true),
        _ => {
            eprintln!("usage: wasm-trim IN.wasm OUT.wasm [--keep-responses]");
            return ExitCode::from(2);
        }
    };
    let result = std::fs::read(input)
        .map_err(|e| format!("{input}: {e}"))
        .and_then(|bytes| trim(&bytes, keep_responses))
        .and_then(|(out, n)| {
            // Written beside OUT and renamed over it: OUT may be a hard link to IN (cargo
            // links its artifacts), which must stay untouched.
            let tmp = format!("{output}.tmp");
            std::fs::write(&tmp, out)
                .and_then(|()| std::fs::rename(&tmp, output))
                .map(|()| n)
                .map_err(|e| format!("{output}: {e}"))
        });
    match result {
        Ok(n) => {
            eprintln!("wasm-trim: {n} unimplemented callbacks removed from the exports");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasm-trim: {e}");
            ExitCode::FAILURE
        }
    }
}
