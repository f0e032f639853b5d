//! `necrosis-report`: the command line of the toolkit. It only wires the libraries together:
//! [`cli`] turns flags (and [`sweep_file`] sweep files) into the trainer's typed configs and
//! the analysis's options, the trainer (`necrosis`) runs the sweep, and `necrosis-analysis`
//! writes the report. Errors print as one line naming the input (a setting by its flag) and
//! the problem, with a non-zero exit.

use clap::Parser;

mod cli;
mod flags;
mod sweep_file;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    necrosis::keep_freed_memory();
    // Panics inside dependencies (polars on a damaged parquet file) are caught and reported as an
    // error naming the file; this hook keeps the line printed where the panic happened short.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        eprintln!("necrosis-report: internal failure at {location}");
    }));
    let cli = cli::Cli::parse();
    if let Err(err) = cli::main_with_args(cli) {
        eprintln!("error: {}", cli::user_message(&err));
        std::process::exit(1);
    }
}
