//! The smallest cargo-pybundle application: Rust asks a bundled Python script to greet.
//!
//! Build and run with `cargo pybundle run --manifest-path examples/hello/Cargo.toml -- <name>`.
//! The first run unpacks the bundled environment into the cache; later runs start at once.

use std::process::ExitCode;

fn main() -> ExitCode {
    match greet() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hello: {}", err.report());
            ExitCode::FAILURE
        }
    }
}

fn greet() -> pybundle_runtime::Result<()> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "world".to_owned());
    let bundle = pybundle_runtime::Bundle::embedded()?.progress_to_stderr();
    let env = bundle.ready()?;
    let reply: serde_json::Value = env
        .script("hello")
        .input(&serde_json::json!({ "name": name }))
        .run()?
        .reply;
    println!("{}", reply["greeting"].as_str().unwrap_or("(no greeting)"));
    println!("python {} at {}", reply["python"], reply["prefix"]);
    Ok(())
}
