//! docs/CLAIMS.md, the map from README.md's claims to the checks behind them (issue 23), stays
//! true: every quoted claim still occurs in README.md, and every test, bench row and air-gap case
//! it names still exists. Rewording README or renaming a test fails here until the map follows.
//!
//! An entry is one table row, `| "<quote>" | <backing> |` (a `|` of README's written `\|`),
//! where the backing is `none: <why>`, or an optional `partly: ` and then references separated
//! by `, ` — `test <path>::<fn>`, `doctest <path>::<fn>`, `bench "<row label>"`, `airgap "<case
//! name>"`, `xtask <path>` — followed by ` — <note>` (which `partly:` must have).

use std::path::Path;

/// The map, relative to the workspace root.
const MAP: &str = "docs/CLAIMS.md";

/// The table's header row and separator, the only other `|` lines the map may hold.
const HEADER: &str = "| claim | backed by |";
const SEPARATOR: &str = "|---|---|";

/// How many words a quote may have: enough to be found once, short enough to read.
const QUOTE_WORDS: std::ops::RangeInclusive<usize> = 4..=12;

/// One thing an entry names as backing a claim.
#[derive(Debug, PartialEq)]
enum Reference {
    /// `fn name` in the `.rs` file at `path`.
    Test { path: String, name: String },
    /// The doc example of `fn name` in the `.rs` file at `path`.
    Doctest { path: String, name: String },
    /// A row label written by `cargo xtask bench`.
    Bench(String),
    /// A case run by `cargo xtask airgap`.
    Airgap(String),
    /// A file of xtask that performs the check itself.
    Xtask(String),
}

/// What the checks need to see: README.md, the xtask sources that hold bench rows and air-gap
/// cases, and any other file by its path relative to the workspace root.
struct World<'a> {
    readme: &'a str,
    bench: &'a str,
    airgap: &'a str,
    file: &'a dyn Fn(&str) -> Option<String>,
}

/// `text` with every run of whitespace made one space, so a quote may cross README's line breaks.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits an entry row into its quote and its backing cell.
fn split_row(line: &str) -> Result<(&str, &str), String> {
    let rest = line
        .strip_prefix("| \"")
        .ok_or("a row must start with `| \"` and the quoted claim")?;
    let (quote, backing) = rest
        .split_once("\" | ")
        .ok_or("the quote must end with `\" | ` before the backing")?;
    let backing = backing
        .strip_suffix(" |")
        .ok_or("a row must end with ` |`")?;
    Ok((quote, backing.trim()))
}

/// Reads one reference at the start of `text`; returns it and what follows it.
fn parse_reference(text: &str) -> Result<(Reference, &str), String> {
    let quoted = |rest: &str| -> Result<(String, usize), String> {
        let end = rest
            .find('"')
            .ok_or(format!("unterminated quote in `{text}`"))?;
        Ok((rest[..end].to_owned(), end + 1))
    };
    if let Some(rest) = text.strip_prefix("bench \"") {
        let (label, used) = quoted(rest)?;
        return Ok((Reference::Bench(label), &rest[used..]));
    }
    if let Some(rest) = text.strip_prefix("airgap \"") {
        let (case, used) = quoted(rest)?;
        return Ok((Reference::Airgap(case), &rest[used..]));
    }
    let word_end = |rest: &str| rest.find([',', ' ']).unwrap_or(rest.len());
    if let Some(rest) = text.strip_prefix("xtask ") {
        let end = word_end(rest);
        return Ok((Reference::Xtask(rest[..end].to_owned()), &rest[end..]));
    }
    for kind in ["test", "doctest"] {
        let Some(rest) = text.strip_prefix(kind).and_then(|r| r.strip_prefix(' ')) else {
            continue;
        };
        let end = word_end(rest);
        let (path, name) = rest[..end].split_once("::").ok_or(format!(
            "`{kind} {}` is not `{kind} <path>::<fn>`",
            &rest[..end]
        ))?;
        let (path, name) = (path.to_owned(), name.to_owned());
        let reference = match kind {
            "test" => Reference::Test { path, name },
            _ => Reference::Doctest { path, name },
        };
        return Ok((reference, &rest[end..]));
    }
    Err(format!(
        "`{text}` is none of `test`, `doctest`, `bench`, `airgap`, `xtask`"
    ))
}

/// The references of a backing cell, after any `partly: ` and before any ` — <note>`.
fn parse_backing(cell: &str) -> Result<Vec<Reference>, String> {
    if let Some(why) = cell.strip_prefix("none:") {
        if why.trim().is_empty() {
            return Err("`none:` must say why".to_owned());
        }
        return Ok(Vec::new());
    }
    let partly = cell.strip_prefix("partly:");
    let cell = partly.unwrap_or(cell).trim_start();
    let (refs, note) = cell.split_once(" — ").unwrap_or((cell, ""));
    if partly.is_some() && note.trim().is_empty() {
        return Err("`partly:` must say after ` — ` what is not checked".to_owned());
    }
    let mut rest = refs.trim_end();
    let mut found = Vec::new();
    loop {
        let (reference, after) = parse_reference(rest)?;
        found.push(reference);
        if after.is_empty() {
            return Ok(found);
        }
        rest = after.strip_prefix(", ").ok_or(format!(
            "expected `, ` or the end after a reference, not `{after}`"
        ))?;
    }
}

/// What is wrong with one reference, if anything.
fn check_reference(reference: &Reference, world: &World<'_>) -> Option<String> {
    match reference {
        Reference::Test { path, name } | Reference::Doctest { path, name } => {
            let Some(text) = (world.file)(path) else {
                return Some(format!("{path} does not exist"));
            };
            let defined = [format!("fn {name}("), format!("fn {name}<")]
                .iter()
                .any(|def| text.contains(def.as_str()));
            (!defined).then(|| format!("{path} has no `fn {name}`"))
        }
        Reference::Bench(label) => (!world.bench.contains(label.as_str()))
            .then(|| format!("no bench row `{label}` in xtask/src/bench")),
        Reference::Airgap(case) => (!world.airgap.contains(case.as_str()))
            .then(|| format!("no air-gap case `{case}` in xtask/src/airgap")),
        Reference::Xtask(path) => {
            let inside = path.starts_with("xtask/");
            (!inside || (world.file)(path).is_none())
                .then(|| format!("{path} is no file under xtask/"))
        }
    }
}

/// Every problem of one entry row: the quote, its length, its references.
fn check_row(line: &str, readme: &str, world: &World<'_>) -> Vec<String> {
    let (quote, backing) = match split_row(line) {
        Ok(cells) => cells,
        Err(why) => return vec![why],
    };
    // A table cell writes README's own `|` as `\|`.
    let quote = quote.replace("\\|", "|");
    let mut problems = Vec::new();
    let words = quote.split_whitespace().count();
    if !QUOTE_WORDS.contains(&words) {
        problems.push(format!(
            "the quote has {words} words, not {}–{}",
            QUOTE_WORDS.start(),
            QUOTE_WORDS.end()
        ));
    }
    if !readme.contains(&squeeze(&quote)) {
        problems.push(format!("README.md does not say \"{quote}\""));
    }
    match parse_backing(backing) {
        Ok(refs) => problems.extend(refs.iter().filter_map(|r| check_reference(r, world))),
        Err(why) => problems.push(why),
    }
    problems
}

/// Every problem of the map, each as `docs/CLAIMS.md:<line>: <problem>`; empty when it holds.
fn check(map: &str, world: &World<'_>) -> Vec<String> {
    let readme = squeeze(world.readme);
    let mut problems = Vec::new();
    for (index, line) in map.lines().enumerate() {
        let line = line.trim_end();
        if !line.starts_with('|') || line == HEADER || line == SEPARATOR {
            continue;
        }
        for problem in check_row(line, &readme, world) {
            problems.push(format!("{MAP}:{}: {problem}", index + 1));
        }
    }
    problems
}

/// The concatenated `.rs` files directly in `dir`.
fn sources_in(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            text += &std::fs::read_to_string(&path).unwrap();
        }
    }
    text
}

#[test]
fn every_claim_in_the_map_is_in_the_readme_and_its_checks_exist() {
    let root = testkit::workspace_root();
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap();
    let map = read(MAP);
    let readme = read("README.md");
    let bench = sources_in(&root.join("xtask/src/bench"));
    let airgap = sources_in(&root.join("xtask/src/airgap"));
    let file = |rel: &str| std::fs::read_to_string(root.join(rel)).ok();
    let world = World {
        readme: &readme,
        bench: &bench,
        airgap: &airgap,
        file: &file,
    };
    let problems = check(&map, &world);
    assert!(
        problems.is_empty(),
        "{} problem(s) in {MAP}:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let entries = map.lines().filter(|l| l.starts_with("| \"")).count();
    assert!(entries > 0, "{MAP} holds no entries");
}

/// A world of one README sentence, one test file, one bench row and one air-gap case.
fn with_fake_world(map: &str) -> Vec<String> {
    let file = |rel: &str| match rel {
        "t/it.rs" => Some("#[test]\nfn it_works() {}\n".to_owned()),
        "xtask/src/deps.rs" => Some(String::new()),
        _ => None,
    };
    let world = World {
        readme:
            "The program starts\nfrom anywhere and finds its bundle.\n| 2 | invalid command line |",
        bench: r#"row("warm start, p50", None)"#,
        airgap: r#"report.case("hello as root", || ok())"#,
        file: &file,
    };
    check(map, &world)
}

#[test]
fn a_good_map_has_no_problems() {
    let map = "# Claims\n\n| claim | backed by |\n|---|---|\n\
               | \"starts from anywhere and finds\" | test t/it.rs::it_works, bench \"warm start, p50\" |\n\
               | \"program starts from anywhere\" | partly: airgap \"hello as root\" — only as root |\n\
               | \"The program starts from\" | xtask xtask/src/deps.rs, doctest t/it.rs::it_works |\n\
               | \"and finds its bundle.\" | none: not testable here, it is a promise |\n\
               | \"2 \\| invalid command line\" | none: README's own `|` is written escaped |\n";
    assert_eq!(with_fake_world(map), Vec::<String>::new());
}

#[test]
fn a_quote_no_longer_in_the_readme_is_named_with_its_line() {
    let problems = with_fake_world(
        "| claim | backed by |\n|---|---|\n| \"starts from nowhere and finds\" | none: advice |\n",
    );
    assert_eq!(
        problems,
        ["docs/CLAIMS.md:3: README.md does not say \"starts from nowhere and finds\""]
    );
}

#[test]
fn missing_tests_rows_and_cases_are_all_reported_at_once() {
    let map = "| \"The program starts from\" | test t/gone.rs::x, test t/it.rs::it_fails |\n\
               | \"program starts from anywhere\" | bench \"cold start\", airgap \"hello as user\" |\n\
               | \"starts from anywhere and\" | xtask xtask/src/gone.rs, xtask cargo-pybundle/src/lib.rs |\n";
    assert_eq!(
        with_fake_world(map),
        [
            "docs/CLAIMS.md:1: t/gone.rs does not exist",
            "docs/CLAIMS.md:1: t/it.rs has no `fn it_fails`",
            "docs/CLAIMS.md:2: no bench row `cold start` in xtask/src/bench",
            "docs/CLAIMS.md:2: no air-gap case `hello as user` in xtask/src/airgap",
            "docs/CLAIMS.md:3: xtask/src/gone.rs is no file under xtask/",
            "docs/CLAIMS.md:3: cargo-pybundle/src/lib.rs is no file under xtask/",
        ]
    );
}

#[test]
fn malformed_rows_are_named() {
    let map = "| starts from anywhere and | none: unquoted |\n\
               | \"starts from anywhere and\" | none: |\n\
               | \"starts from anywhere and\" | test t/it.rs |\n\
               | \"starts from anywhere and\" | test t/it.rs::it_works; bench \"x\" |\n\
               | \"starts from anywhere and\" | checked by hand |\n\
               | \"starts from\" | none: two words |\n\
               | \"starts from anywhere and\" | partly: test t/it.rs::it_works |\n\
               | \"starts from anywhere and\" | none: no closing bar\n";
    let problems = with_fake_world(map);
    let expected = [
        (1, "must start with"),
        (2, "must say why"),
        (3, "is not `test <path>::<fn>`"),
        (4, "expected `, ` or the end"),
        (5, "is none of"),
        (6, "2 words"),
        (7, "must say after ` — ` what is not checked"),
        (8, "must end with ` |`"),
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (problem, (line, says)) in problems.iter().zip(expected) {
        let prefix = format!("docs/CLAIMS.md:{line}: ");
        assert!(
            problem.starts_with(&prefix) && problem.contains(says),
            "expected line {line} to say `{says}`: {problem}"
        );
    }
}

#[test]
fn references_parse_with_commas_inside_quotes_and_a_trailing_note() {
    let refs = parse_backing(
        "partly: bench \"warm `ready()`, in process (p50)\", test a/b.rs::c — no row for verify",
    )
    .unwrap();
    assert_eq!(
        refs,
        [
            Reference::Bench("warm `ready()`, in process (p50)".to_owned()),
            Reference::Test {
                path: "a/b.rs".to_owned(),
                name: "c".to_owned()
            },
        ]
    );
    assert_eq!(parse_backing("none: pixi's own behaviour"), Ok(Vec::new()));
}

/// A problem when README does not say `text` (a sentence built from the code's constants).
fn says(readme: &str, text: &str) -> Option<String> {
    (!readme.contains(text)).then(|| format!("README.md no longer says `{text}`"))
}

/// The numbers and defaults README states that are constants of the code: each sentence is
/// rebuilt from the constant and must occur in README.md, so changing either side fails here.
#[test]
fn the_numbers_readme_states_are_the_constants_of_the_code() {
    use cargo_pybundle::{download, metadata, pixi, RUNTIME_REQUIREMENT};
    use pybundle_runtime::{format::FORMAT_VERSION, protocol, TRAILER_LEN};
    let readme =
        squeeze(&std::fs::read_to_string(testkit::workspace_root().join("README.md")).unwrap());
    let mib = |bytes: usize| bytes >> 20;
    let exclude = format!("`{:?}`", metadata::DEFAULT_EXCLUDE);
    let sentences = [
        format!("a {TRAILER_LEN}-byte trailer"),
        format!(
            "`max_frame` ({} MiB) per frame",
            mib(protocol::DEFAULT_MAX_FRAME)
        ),
        format!(
            "`max_message` ({} MiB) per message",
            mib(protocol::DEFAULT_MAX_MESSAGE)
        ),
        format!("this CLI writes format {FORMAT_VERSION},"),
        format!("bundle-formats = [{FORMAT_VERSION}]"),
        format!(
            "cargo-pybundle runs pixi **{} or newer**",
            pixi::MIN_PIXI_VERSION
        ),
        format!(
            "the whole test suite runs, is **{}**",
            pixi::DEFAULT_PIXI_VERSION
        ),
        format!(
            "| `pixi-version` | string | `\"{}\"` |",
            pixi::DEFAULT_PIXI_VERSION
        ),
        format!("| `exclude` | array of globs | {exclude} |"),
        format!(
            "| `compression-level` | integer 1–22 | {}, or {} with `--release` |",
            metadata::DEV_COMPRESSION_LEVEL,
            metadata::RELEASE_COMPRESSION_LEVEL
        ),
        format!(
            "| `{}` | build | `{}` |",
            download::MIRROR_VAR,
            download::DEFAULT_BASE_URL
        ),
        format!(
            "| `{}` | build | `{}` |",
            download::TIMEOUT_VAR,
            download::DEFAULT_TIMEOUT.as_secs()
        ),
        format!("`pybundle-runtime = \"{RUNTIME_REQUIREMENT}\"`"),
        // The message's words are checked by download.rs's stalled_body_times_out.
        format!(
            "exit 4: `… sent nothing for {:.1} s (timed out)`",
            download::DEFAULT_TIMEOUT.as_secs_f64()
        ),
    ];
    let problems: Vec<String> = sentences.iter().filter_map(|s| says(&readme, s)).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The meaning `--help` gives exit code `code`, from the squeezed text after "Exit status:".
fn meaning_of(codes: &str, code: u32) -> Option<&str> {
    let rest = codes.split_once(&format!(" {code} "))?.1;
    let end = rest
        .find(&format!(" {} ", code + 1))
        .or_else(|| rest.find(" `run` and"))
        .unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// README's table of exit codes says what `cargo pybundle build --help` says, code for code.
#[test]
fn the_exit_codes_in_the_readme_are_the_ones_help_prints() {
    let readme = std::fs::read_to_string(testkit::workspace_root().join("README.md")).unwrap();
    let out = crate::support::cargo_pybundle()
        .args(["build", "--help"])
        .output()
        .unwrap();
    let help = squeeze(&String::from_utf8(out.stdout).unwrap());
    let codes = format!(
        " {}",
        help.split_once("Exit status:")
            .expect("exit codes in --help")
            .1
    );
    let mut problems = Vec::new();
    for code in 0..=7 {
        let meaning = meaning_of(&codes, code).unwrap_or_default();
        let row = readme
            .lines()
            .find_map(|l| l.strip_prefix(&format!("| {code} | ")))
            .map(|row| row.replace('`', ""));
        if meaning.is_empty() || !row.is_some_and(|row| row.starts_with(meaning)) {
            problems.push(format!(
                "README's exit code {code} does not say `{meaning}`"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
