//! {{name}}: a Rust program that runs a bundled Python script.
//!
//! Build with `cargo pybundle build`, or build and run with `cargo pybundle run -- <text>`.
//! The first run unpacks the bundled Python environment into the cache; later runs start at
//! once.

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{{name}}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> pybundle_runtime::Result<()> {
    let text = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let env = pybundle_runtime::Bundle::embedded()?
        .progress_to_stderr()
        .ready()?;
    let reply: serde_json::Value = env
        .script("{{module}}")
        .input(&serde_json::json!({ "text": text }))
        .run()?
        .reply;
    println!("{}", reply["message"].as_str().unwrap_or("(no message)"));
    Ok(())
}
