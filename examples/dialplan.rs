//! Which connection does a number route to? The tool to run when "the
//! connection works but calls don't route".
//!
//! ```text
//! cargo run --example dialplan -- --plan PLAN.toml [--search] NUMBER...
//! ```
//!
//! PLAN.toml holds `[[connection]]` tables in order, each with `name`,
//! `patterns = [...]` and optional `rewrite = [...]` (one template per
//! pattern, `""` for none). For each number one line is printed:
//!
//! ```text
//! 4711 -> alice-pbx (pattern 1: 4[0-9]{3}) as 4711
//! 902081230958 -> pstn (pattern 1: 9(0[0-9]+)) as 02081230958
//! 12 -> no route
//! ```
//!
//! A plan that does not load or build prints the error and exits with 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use siplink::dialplan::{DialPlan, Error, Limits, MatchMode, PlanConfig};

/// Route dialled numbers through a dial plan file and show which connection
/// and pattern each one takes.
#[derive(Debug, Parser)]
struct Args {
    /// The plan: `[[connection]]` tables with `name`, `patterns` and optional
    /// `rewrite`.
    #[arg(long, value_name = "PLAN.toml")]
    plan: PathBuf,
    /// Plain regex search semantics (a pattern may match inside the number;
    /// `^` and `$` matter) instead of whole-number matching.
    #[arg(long)]
    search: bool,
    /// The numbers to route, matched exactly as given.
    #[arg(value_name = "NUMBER", required = true)]
    numbers: Vec<String>,
}

/// Reads and builds the plan; the error is ready to print.
fn load(args: &Args) -> Result<DialPlan, String> {
    let path = args.plan.display();
    let text =
        std::fs::read_to_string(&args.plan).map_err(|err| format!("cannot read {path}: {err}"))?;
    let mode = if args.search {
        MatchMode::Search
    } else {
        MatchMode::FullMatch
    };
    PlanConfig::from_toml(&text)
        .and_then(|config| config.build(mode, Limits::default()))
        .map_err(|err: Error| format!("{path}: {err}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match load(&args) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    for number in &args.numbers {
        match plan.lookup(number) {
            // `NAME (pattern N: PATTERN) as OUTPUT`
            Some(route) => println!("{number} -> {route}"),
            None => println!("{number} -> no route"),
        }
    }
    ExitCode::SUCCESS
}
