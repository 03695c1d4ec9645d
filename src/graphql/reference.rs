//! The reference reader of a GraphQL document: apollo-parser's full parser (a syntax
//! tree), which the token-level reader of [`super::document_fields`] must never be more
//! lenient than nor disagree with. Used by the unit tests and the `graphql` fuzz target
//! (`cargo fuzz` builds with the `fuzzing` feature); never in the module.

use super::{Limits, OperationKind, Refusal, RootField};
use apollo_parser::cst;
use std::collections::HashMap;

/// The operation's root fields by apollo-parser's full parser: the same contract as
/// [`super::document_fields`].
pub fn root_fields(
    doc: &str,
    operation_name: Option<&str>,
    limits: &Limits,
) -> Result<Vec<RootField>, Refusal> {
    let tree = apollo_parser::Parser::new(doc)
        .recursion_limit(limits.max_depth)
        .token_limit(limits.max_tokens)
        .parse();
    if let Some(e) = tree.errors().next() {
        return Err(Refusal::from(if e.is_limit() {
            if tree.token_limit().high > limits.max_tokens {
                format!(
                    "GraphQL document has more than {} tokens",
                    limits.max_tokens
                )
            } else {
                format!(
                    "GraphQL document is nested deeper than {}",
                    limits.max_depth
                )
            }
        } else {
            format!("GraphQL document is not valid: {}", e.message())
        }));
    }
    let mut operations = Vec::new();
    let mut fragments: HashMap<String, cst::SelectionSet> = HashMap::new();
    for def in tree.document().definitions() {
        match def {
            cst::Definition::OperationDefinition(op) => operations.push(op),
            cst::Definition::FragmentDefinition(f) => {
                let name = f
                    .fragment_name()
                    .and_then(|n| n.name())
                    .map(|n| n.text().to_string())
                    .ok_or("a fragment has no name")?;
                let set = f.selection_set().ok_or("a fragment has no selection set")?;
                if fragments.insert(name.clone(), set).is_some() {
                    return Err(Refusal::from(format!("fragment {name} is defined twice")));
                }
            }
            // Type-system definitions are not requests.
            _ => {
                return Err(Refusal::from(
                    "a GraphQL request holds operations and fragments only",
                ))
            }
        }
    }
    let op_name = |op: &cst::OperationDefinition| op.name().map(|n| n.text().to_string());
    let selected = match operation_name {
        Some(want) => {
            let mut named = operations
                .iter()
                .filter(|op| op_name(op).as_deref() == Some(want));
            let first = named.next();
            if named.next().is_some() {
                return Err(Refusal::from(format!("operation {want} is defined twice")));
            }
            first
                .ok_or_else(|| format!("operationName {want} names no operation of the document"))?
        }
        None => match operations.as_slice() {
            [one] => one,
            [] => return Err(Refusal::from("the GraphQL document has no operation")),
            _ => {
                return Err(Refusal::from(
                    "operationName is required for a document with several operations",
                ))
            }
        },
    };
    let kind = match selected.operation_type() {
        None => OperationKind::Query,
        Some(t) if t.mutation_token().is_some() => OperationKind::Mutation,
        Some(t) if t.subscription_token().is_some() => OperationKind::Subscription,
        Some(_) => OperationKind::Query,
    };
    let set = selected
        .selection_set()
        .ok_or("the operation has no selection set")?;
    let mut names = Vec::new();
    collect(&set, &fragments, &mut Vec::new(), &mut names)?;
    Ok(names
        .into_iter()
        .map(|name| RootField {
            operation: kind,
            name,
        })
        .collect())
}

/// The field names of a root selection set, through fragment spreads (each fragment once
/// per path: a cycle is refused) and inline fragments.
fn collect(
    set: &cst::SelectionSet,
    fragments: &HashMap<String, cst::SelectionSet>,
    path: &mut Vec<String>,
    out: &mut Vec<String>,
) -> Result<(), Refusal> {
    for selection in set.selections() {
        match selection {
            cst::Selection::Field(f) => {
                let name = f.name().ok_or("a field has no name")?.text().to_string();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            cst::Selection::InlineFragment(i) => {
                let inner = i
                    .selection_set()
                    .ok_or("an inline fragment has no selection set")?;
                collect(&inner, fragments, path, out)?;
            }
            cst::Selection::FragmentSpread(s) => {
                let name = s
                    .fragment_name()
                    .and_then(|n| n.name())
                    .map(|n| n.text().to_string())
                    .ok_or("a fragment spread has no name")?;
                if path.contains(&name) {
                    return Err(Refusal::from(format!("fragment {name} spreads itself")));
                }
                let inner = fragments
                    .get(&name)
                    .ok_or_else(|| format!("fragment {name} is not defined"))?;
                path.push(name);
                collect(inner, fragments, path, out)?;
                path.pop();
            }
        }
    }
    Ok(())
}
