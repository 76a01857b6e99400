//! The `spotmill` binary.

mod cli;

use clap::Parser;
use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match &cli.command {
        Command::Gen(args) => cli::gen::execute(args),
        Command::Run(args) => cli::run::execute(args),
        Command::Prune(args) => cli::run::prune(args),
        Command::Validate(args) => cli::validate::execute(args),
        Command::Serve(args) => cli::serve::execute(args),
        Command::New(args) => cli::new::execute(args),
        Command::Submit(args) => cli::fleet::submit_command(args),
        Command::Worker(args) => cli::fleet::worker_command(args),
        Command::Aggregate(args) => cli::fleet::aggregate_command(args),
        Command::Status(args) => cli::fleet::status_command(args),
        Command::CreateQueues(args) => cli::fleet::create_queues_command(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    }
}
