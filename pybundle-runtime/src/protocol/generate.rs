//! Writes the Python half's `pybundle/_protocol.py` from the table (tests only): the message
//! type names, a constructor for every message the Python side sends, the field lists and the
//! argv layouts. The test below keeps the committed file equal to what this renders.

use std::fmt::Write as _;

use super::table::{Argv, FieldKind, Message, Sender, MESSAGES, SCRIPT_ARGV, WORKER_ARGV};

/// Fields the channel's encoder adds itself (the value and its binary frames).
const ADDED_BY_CHANNEL: &[&str] = &["data", "buffers"];

fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn py_type(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Int => "int",
        FieldKind::Str => "str",
        FieldKind::StrList => "List[str]",
        FieldKind::Value => "Any",
        FieldKind::Object | FieldKind::Error => "dict",
    }
}

fn tuple(items: impl Iterator<Item = &'static str>) -> String {
    let items: Vec<String> = items.map(|i| format!("{i:?}")).collect();
    match items.len() {
        0 => "()".into(),
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}

fn constructor(m: &Message, out: &mut String) {
    let fields: Vec<_> = m
        .fields
        .iter()
        .filter(|f| !ADDED_BY_CHANNEL.contains(&f.name))
        .collect();
    let mut params: Vec<String> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| format!("{}: {}", f.name, py_type(f.kind)))
        .collect();
    params.extend(
        fields
            .iter()
            .filter(|f| !f.required)
            .map(|f| format!("{}: Optional[{}] = None", f.name, py_type(f.kind))),
    );
    let _ = writeln!(out, "\n\ndef {}({}) -> dict:", m.name, params.join(", "));
    let mut doc = format!("The `{}` message: {}.", m.name, m.doc);
    if m.fields.iter().any(|f| f.name == "data") {
        doc.push_str(" The channel adds `data` and `buffers`.");
    }
    let body = wrap(&doc, "    ", 96);
    let _ = writeln!(out, "    \"\"\"{}\"\"\"", body.trim_start().trim_end());
    let required: Vec<String> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| format!(", {:?}: {}", f.name, f.name))
        .collect();
    let optional: Vec<_> = fields.iter().filter(|f| !f.required).collect();
    // The constant, not a literal: one spelling of each name in the module.
    let head = format!(
        "{{\"type\": {}{}}}",
        m.name.to_uppercase(),
        required.concat()
    );
    if optional.is_empty() {
        let _ = writeln!(out, "    return {head}");
        return;
    }
    let _ = writeln!(out, "    head: dict = {head}");
    for f in optional {
        let _ = writeln!(
            out,
            "    if {0} is not None:\n        head[{0:?}] = {0}",
            f.name
        );
    }
    let _ = writeln!(out, "    return head");
}

/// The text of `_protocol.py`.
pub(crate) fn python_module() -> String {
    let mut out = String::new();
    out.push_str(
        "\"\"\"The protocol's message types and argv layouts, shared by the runners.\n\n\
         Generated from pybundle-runtime/src/protocol/table.rs: do not edit. A Rust test keeps \
         this file\nequal to the table; `PYBUNDLE_BLESS=1 cargo test -p pybundle-runtime \
         protocol` rewrites it.\n\"\"\"\n\n\
         from __future__ import annotations\n\n\
         TYPE_CHECKING = False\n\
         if TYPE_CHECKING:\n    from typing import Any, Dict, List, Optional, Tuple\n",
    );
    for sender in [Sender::Runtime, Sender::Python] {
        let _ = write!(
            out,
            "\n# Messages the {} sends.\n",
            match sender {
                Sender::Runtime => "runtime",
                Sender::Python => "Python side",
            }
        );
        for m in MESSAGES.iter().filter(|m| m.sender == sender) {
            let _ = writeln!(out, "{} = {:?}", m.name.to_uppercase(), m.name);
        }
    }
    out.push_str(
        "\n# Every message type: (sender, runner, required fields, optional fields).\n\
         MESSAGES: Dict[str, Tuple[str, str, Tuple[str, ...], Tuple[str, ...]]] = {\n",
    );
    for m in MESSAGES {
        let _ = writeln!(
            out,
            "    {}: ({:?}, {:?}, {}, {}),",
            m.name.to_uppercase(),
            format!("{:?}", m.sender).to_lowercase(),
            format!("{:?}", m.runner).to_lowercase(),
            tuple(m.fields.iter().filter(|f| f.required).map(|f| f.name)),
            tuple(m.fields.iter().filter(|f| !f.required).map(|f| f.name)),
        );
    }
    out.push_str("}\n");
    for (name, argv) in [("SCRIPT_ARGV", SCRIPT_ARGV), ("WORKER_ARGV", WORKER_ARGV)] {
        let Argv { runner, args } = argv;
        let _ = write!(
            out,
            "\n# python -I -c <bootstrap> ARGV..., run by pybundle.{runner}\n\
             {name}: Tuple[str, ...] = {}\n",
            tuple(args.iter().copied())
        );
    }
    out.push_str(
        "\n\ndef parse_argv(layout: Tuple[str, ...], argv: List[str]) -> Dict[str, Any]:\n    \
         \"\"\"Names a runner's arguments (`sys.argv[1:]`) by `layout`; `name...` takes the \
         rest.\"\"\"\n    \
         named: Dict[str, Any] = {}\n    \
         for i, name in enumerate(layout):\n        \
         if name.endswith(\"...\"):\n            \
         named[name[:-3]] = argv[i:]\n        \
         elif i < len(argv):\n            \
         named[name] = argv[i]\n        \
         else:\n            \
         raise ValueError(\"pybundle: argument %r missing; run this through the runtime\" % name)\n    \
         return named\n",
    );
    for m in MESSAGES.iter().filter(|m| m.sender == Sender::Python) {
        constructor(m, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn the_python_protocol_module_is_generated_from_the_table() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/pybundle/_protocol.py");
        let want = super::python_module();
        if std::env::var_os("PYBUNDLE_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date with src/protocol/table.rs; run \
             `PYBUNDLE_BLESS=1 cargo test -p pybundle-runtime protocol` to regenerate it",
            path.display()
        );
    }
}
