//! Passes a map of parameters to a click-based Python script as `--key value` options and
//! reads its JSON reply. click comes from PyPI (`[pypi-dependencies]` in pixi.toml).
//!
//! `cargo pybundle run --manifest-path examples/annotate/Cargo.toml -- text="a b c" label=x`

use serde::Deserialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// The script's reply.
#[derive(Debug, Deserialize)]
struct Annotated {
    params: BTreeMap<String, String>,
    words: usize,
    click: String,
}

fn main() -> ExitCode {
    // `key=value` arguments become the parameter map.
    let mut params = BTreeMap::new();
    for arg in std::env::args().skip(1) {
        let Some((key, value)) = arg.split_once('=') else {
            eprintln!("annotate: expected key=value, got `{arg}`");
            return ExitCode::from(2);
        };
        params.insert(key.to_owned(), value.to_owned());
    }
    match annotate(&params) {
        Ok(a) => {
            for (key, value) in &a.params {
                println!("{key}: {value}");
            }
            println!("words: {} (click {})", a.words, a.click);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("annotate: {}", err.report());
            ExitCode::FAILURE
        }
    }
}

fn annotate(params: &BTreeMap<String, String>) -> pybundle_runtime::Result<Annotated> {
    let env = pybundle_runtime::Bundle::embedded()?.ready()?;
    // Options are separate arguments, never one shell string: values may hold spaces or quotes.
    let options = params
        .iter()
        .flat_map(|(key, value)| [format!("--{key}"), value.clone()]);
    Ok(env.script("annotate").args(options).run()?.reply)
}
