//! A Rust program whose Python side is a pyproject.toml project: it asks the bundled package
//! for word statistics of its arguments and prints them.

use pybundle_runtime::Bundle;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Stats {
    words: u64,
    distinct: u64,
    most_common: Option<String>,
    style: String,
    console_script: String,
    package_file: String,
    click: String,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pyreport: {}", err.report());
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), pybundle_runtime::Error> {
    let text = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let text = if text.is_empty() {
        "the quick brown fox jumps over the lazy dog the end".to_owned()
    } else {
        text
    };
    let env = Bundle::embedded()?.ready()?;
    let stats: Stats = env
        .script("stats")
        .input(&serde_json::json!({ "text": text }))
        .run()?
        .reply;
    println!(
        "{} words, {} distinct, most common {:?} (style {})",
        stats.words, stats.distinct, stats.most_common, stats.style
    );
    println!("console script: {}", stats.console_script);
    println!("package: {}", stats.package_file);
    println!("click {}", stats.click);
    Ok(())
}
