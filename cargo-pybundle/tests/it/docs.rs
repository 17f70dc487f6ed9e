//! README.md's configuration reference matches the code, both directions: every key the
//! metadata parser accepts is documented and every documented key is accepted; the same for
//! the `PYBUNDLE_*` environment variables the crates read.

use std::collections::BTreeSet;
use std::path::Path;

fn readme() -> String {
    std::fs::read_to_string(testkit::workspace_root().join("README.md")).unwrap()
}

/// The backticked first cells of the table rows in `section` (up to the next `## `), split by
/// table: the first table's cells, then the second's.
fn first_cells(readme: &str, section: &str) -> Vec<BTreeSet<String>> {
    let start = readme
        .find(section)
        .unwrap_or_else(|| panic!("README has no `{section}`"));
    let body = &readme[start + section.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut tables = Vec::new();
    let mut current = BTreeSet::new();
    for line in body.lines() {
        let Some(row) = line.strip_prefix("| `") else {
            if !current.is_empty() && !line.starts_with('|') {
                tables.push(std::mem::take(&mut current));
            }
            continue;
        };
        let cell = row.split('`').next().unwrap();
        current.insert(cell.to_owned());
    }
    if !current.is_empty() {
        tables.push(current);
    }
    tables
}

/// Every `PYBUNDLE_[A-Z_]+` named in `path` or the `.rs` files under it.
fn env_vars_in(path: &Path, out: &mut BTreeSet<String>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            env_vars_in(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        {
            let text = std::fs::read_to_string(path).unwrap();
            for (at, _) in text.match_indices("PYBUNDLE_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                out.insert(name.trim_end_matches('_').to_owned());
            }
            // Variables of other names the code reads (e.g. binutils' `STRIP`).
            for call in ["var_os(\"", "var(\""] {
                for (at, _) in text.match_indices(call) {
                    let rest = &text[at + call.len()..];
                    if let Some(end) = rest.find('"') {
                        out.insert(format!("read:{}", &rest[..end]));
                    }
                }
            }
        }
    }
}

#[test]
fn readme_documents_every_metadata_key_and_no_other() {
    let tables = first_cells(&readme(), "## Configuration reference");
    assert_eq!(
        tables.len(),
        2,
        "expected the key table and the variable table"
    );
    let documented = &tables[0];
    let accepted: BTreeSet<String> = cargo_pybundle::metadata::KEYS
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(
        documented.difference(&accepted).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "README documents keys the code rejects"
    );
    assert_eq!(
        accepted.difference(documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "keys the code accepts are missing from README's table"
    );
}

#[test]
fn readme_documents_every_environment_variable_and_no_other() {
    let tables = first_cells(&readme(), "## Configuration reference");
    let documented = &tables[1];
    let root = testkit::workspace_root();
    let mut read = BTreeSet::new();
    for path in ["cargo-pybundle/src", "pybundle-runtime/src", "testkit/src"] {
        env_vars_in(&root.join(path), &mut read);
    }
    // `PYBUNDLE_*` anywhere in the code; a variable of another name when the code reads it and
    // README's table lists it (the others, HOME or HTTPS_PROXY, are documented where used).
    let in_code: BTreeSet<String> = read
        .iter()
        .filter_map(|name| match name.strip_prefix("read:") {
            Some(other) => documented.contains(other).then(|| other.to_owned()),
            None => Some(name.clone()),
        })
        .collect();
    assert_eq!(
        documented.difference(&in_code).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "README documents variables no code reads"
    );
    let runtime_and_build: Vec<&String> = in_code.difference(documented).collect();
    assert!(
        runtime_and_build.is_empty(),
        "variables read by the code but missing from README: {runtime_and_build:?}"
    );
}
