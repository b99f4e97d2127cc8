//! `timefuse-lint [PATHS]`: the static audit of timefuse context misuse.
//!
//! Exit codes: 0 when clean, 1 when there are findings, 2 on a usage error or when a file
//! cannot be read or parsed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use timefuse_lint::{Format, Options, Rule, lint_paths, render};

/// Find timefuse contexts that are not passed, not listened to, or released too early.
#[derive(Debug, Parser)]
#[command(name = "timefuse-lint", version, about, long_about = None)]
struct Cli {
    /// Files and directories to lint (directories are walked for `.rs` files).
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, short = 'f', default_value = "human", value_parser = parse_format)]
    format: Format,

    /// Write the report to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,

    /// Also lint test code: `tests/`, `benches/`, `fuzz/`, `#[cfg(test)]` and `#[test]` items.
    #[arg(long)]
    include_tests: bool,

    /// Rules not to run, by code or name (repeatable, or comma-separated).
    #[arg(long, short = 'A', value_delimiter = ',', value_parser = parse_rule)]
    allow: Vec<Rule>,

    /// Run only these rules, by code or name (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = parse_rule)]
    only: Vec<Rule>,

    /// Extra struct-name suffixes allowed to hold a `Context` (TF030), on top of Request,
    /// Call and Task.
    #[arg(long, value_delimiter = ',')]
    allow_struct_suffix: Vec<String>,

    /// List the rules and exit.
    #[arg(long)]
    list_rules: bool,

    /// Explain one rule (by code or name) and exit.
    #[arg(long, value_name = "RULE", value_parser = parse_rule)]
    explain: Option<Rule>,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
        .map_err(|e: timefuse_lint::UnknownFormat| e.to_string())
}

fn parse_rule(s: &str) -> Result<Rule, String> {
    s.parse()
        .map_err(|e: timefuse_lint::UnknownRule| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list_rules {
        for r in Rule::ALL {
            println!(
                "{}  {:<26} {}: {}",
                r.code(),
                r.name(),
                r.family(),
                r.summary()
            );
        }
        return ExitCode::SUCCESS;
    }
    if let Some(r) = cli.explain {
        println!("{} ({}), {}\n", r.code(), r.name(), r.family());
        println!("{}\n", r.description());
        println!("fix: {}", r.help());
        return ExitCode::SUCCESS;
    }
    let mut options = Options::default();
    options.include_tests = cli.include_tests;
    options.disabled.extend(cli.allow.iter().copied());
    if !cli.only.is_empty() {
        options
            .disabled
            .extend(Rule::ALL.into_iter().filter(|r| !cli.only.contains(r)));
    }
    options.extra_struct_suffixes = cli.allow_struct_suffix;
    let report = lint_paths(&cli.paths, &options);
    let text = render(&report, cli.format);
    let written = match &cli.output {
        Some(path) => {
            std::fs::write(path, text.as_bytes()).map_err(|e| (path.display().to_string(), e))
        }
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| ("standard output".to_owned(), e)),
    };
    if let Err((what, e)) = written {
        eprintln!("error: cannot write the report to {what}: {e}");
        return ExitCode::from(2);
    }
    if cli.output.is_some() && cli.format != Format::Human {
        // Keep CI logs readable when the machine report goes to a file.
        eprint!("{}", timefuse_lint::render_human(&report));
    }
    ExitCode::from(u8::try_from(report.exit_code()).unwrap_or(2))
}
