//! `necrosis-report`: parses arguments and hands them to [`necrosis::cli`]. Errors print as one
//! line naming the input and the problem, with a non-zero exit.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    necrosis::keep_freed_memory();
    let cli = necrosis::cli::Cli::parse();
    if let Err(err) = necrosis::cli::main_with_args(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
