//! {{name}}: a Rust program that runs a bundled Python script.
//!
//! `cargo pybundle build` installs the Python environment and writes the program with its
//! bundle to `target/debug/bundled/`; its first run unpacks the bundle into the cache, later
//! runs start at once. After that one build, plain `cargo run -- <text>` and `cargo test` work
//! too: a debug build without a bundle runs the pixi environment and the `python/` folder in
//! place (development mode), so a script edit shows on the next run without a rebuild.

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{{name}}: {}", err.report());
            ExitCode::FAILURE
        }
    }
}

fn run() -> pybundle_runtime::Result<()> {
    let text = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let reply = ask(&text)?;
    println!("{}", reply["message"].as_str().unwrap_or("(no message)"));
    Ok(())
}

/// Sends `text` to `python/{{module}}.py` and returns its reply.
fn ask(text: &str) -> pybundle_runtime::Result<serde_json::Value> {
    let env = pybundle_runtime::Bundle::embedded()?
        .progress_to_stderr()
        .ready()?;
    let reply = env
        .script("{{module}}")
        .input(&serde_json::json!({ "text": text }))
        .run()?
        .reply;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_script_counts_words() {
        let reply = super::ask("one two three").expect("the script runs");
        assert_eq!(reply["words"], 3, "{reply}");
    }
}
