//! `news-seed`: fills the news app's tables with demo data, for trying `stats.correct`
//! and `orders.cancel` (the walkthrough in examples/news-app/README.md) and for the
//! `stats_correct` benchmark's dataset.
//!
//! ```text
//! cargo run --example news-seed -- --url mysql://root@127.0.0.1:3306/newsapp_demo \
//!     [--size 10000] [--create-schema] [--reset] [--seed 1]
//! ```
//!
//! `--size` is the number of attitudes; the other tables scale with it (see
//! `dataset.rs`). `--create-schema` creates the tables first (schema.mysql.sql or
//! schema.postgres.sql); `--reset` empties them first, so seeding can be repeated.

#[path = "dataset.rs"]
mod dataset;

use std::process::ExitCode;
use std::time::Instant;

use dataset::{Database, Sizes};

const USAGE: &str = "usage: news-seed --url mysql://…|postgres://… [--size N] \
                     [--create-schema] [--reset] [--seed N]";

/// What the command line asked for.
struct Options {
    url: String,
    size: u64,
    create_schema: bool,
    reset: bool,
    seed: u64,
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        url: String::new(),
        size: 10_000,
        create_schema: false,
        reset: false,
        seed: 1,
    };
    let number = |flag: &str, value: Option<String>| -> Result<u64, String> {
        let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
        value
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{flag} {value:?} is not a whole number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => options.url = args.next().ok_or("--url needs a value")?,
            "--size" => options.size = number("--size", args.next())?,
            "--seed" => options.seed = number("--seed", args.next())?,
            "--create-schema" => options.create_schema = true,
            "--reset" => options.reset = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.url.is_empty() {
        return Err("--url is required".to_owned());
    }
    Ok(options)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("news-seed: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match seed(&options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("news-seed: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn seed(options: &Options) -> Result<(), String> {
    let mut database = Database::connect(&options.url).await?;
    if options.create_schema {
        database.create_schema().await?;
        eprintln!("created the tables");
    }
    if options.reset {
        database.empty_tables().await?;
        eprintln!("emptied the tables");
    }
    let sizes = Sizes::for_size(options.size);
    let started = Instant::now();
    eprintln!("seeding {} rows (size {}):", sizes.total(), options.size);
    database.seed(sizes, options.seed).await?;
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
