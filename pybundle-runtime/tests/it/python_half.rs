//! The Python half (`python/pybundle/`, as shipped in every bundle) needs nothing but the
//! standard library: every import in it, read with Python's own `ast` by real interpreters,
//! names a standard-library module or `pybundle` itself.

use serde_json::Value;

/// Lists the imports of every `.py` file in `argv[1]`: the top-level modules, and those
/// outside the standard library (`sys.stdlib_module_names`, Python 3.10+) and `pybundle`,
/// split into the ones guarded by an `except ImportError` (optional) and the rest.
const CHECK: &str = r#"
import ast, json, pathlib, sys

found, optional, bad = set(), set(), []
files = sorted(pathlib.Path(sys.argv[1]).glob("*.py"))
for path in files:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
            for n in ast.walk(h.type or ast.Name(id="ImportError"))
        ):
            guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["pybundle" if node.level else node.module]
        else:
            continue
        for top in (name.split(".")[0] for name in names):
            found.add(top)
            if top in sys.stdlib_module_names or top == "pybundle":
                continue
            if id(node) in guarded:
                optional.add(top)
            else:
                bad.append("%s:%d imports %s" % (path.name, node.lineno, top))
print(json.dumps({
    "files": [p.name for p in files],
    "found": sorted(found),
    "optional": sorted(optional),
    "bad": bad,
}))
"#;

#[test]
fn the_python_half_imports_the_standard_library_only() {
    let package = crate::script::lib_dir().join("pybundle");
    let shipped = pybundle_runtime::PYTHON_PACKAGE
        .get_dir("pybundle")
        .expect("the package folder")
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "py"))
        .count();
    let mut checked = 0;
    for py in testkit::pyenv::pythons("the_python_half_imports_the_standard_library_only") {
        let out = std::process::Command::new(&py.interpreter)
            .args(["-I", "-c", CHECK])
            .arg(&package)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("stdlib_module_names") {
            eprintln!("{}: before Python 3.10, no stdlib_module_names", py.label);
            continue;
        }
        assert!(out.status.success(), "{}: {stderr}", py.label);
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["files"].as_array().unwrap().len(), shipped);
        // The check sees imports at all: these are certainly there.
        for module in ["os", "sys", "__future__", "pybundle"] {
            assert!(
                seen["found"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m == module),
                "{module} not found: {seen}"
            );
        }
        assert_eq!(seen["bad"], serde_json::json!([]), "{}", py.label);
        // numpy is imported only when an array arrives, and its absence is reported then.
        assert_eq!(
            seen["optional"],
            serde_json::json!(["numpy"]),
            "{}",
            py.label
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "no interpreter of Python 3.10 or newer to check with"
    );
}
