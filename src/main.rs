//! `necrosis-report`: parses arguments and hands them to [`necrosis::cli`]. Errors print as one
//! line naming the input and the problem, with a non-zero exit.

use clap::Parser;

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
    let cli = necrosis::cli::Cli::parse();
    if let Err(err) = necrosis::cli::main_with_args(cli) {
        eprintln!("error: {}", necrosis::cli::user_message(&err));
        std::process::exit(1);
    }
}
