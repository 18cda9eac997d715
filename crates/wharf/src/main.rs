//! The `wharf` binary: the command line, configuration loading and the wiring of the crates.

mod cache_cmd;
mod client_config;
mod config;
mod logwriter;
mod mirror;
mod prefetch;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::Config;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "A caching pull-through mirror for OCI container registries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mirror (on the embedded default configuration unless --config is given).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and name the first bad field.
    CheckConfig { file: PathBuf },
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Look into and trim the cache of a running wharf (through its admin listener).
    Cache(cache_cmd::Args),
    /// Print (or write) the mirror configuration for podman, containerd or Docker clients.
    ClientConfig(client_config::Args),
    /// Warm the cache: pull images through the running wharf as a client would.
    Prefetch(prefetch::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let loaded = match &config {
                Some(path) => Config::load(path),
                None => Config::embedded(),
            };
            match loaded {
                Ok(c) => serve::run(c),
                Err(e) => {
                    eprintln!("wharf: invalid configuration: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} upstreams, store in {})",
                    file.display(),
                    c.upstream.len(),
                    c.cache.dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wharf: {e}");
                ExitCode::from(2)
            }
        },
        Command::DefaultConfig => {
            print!("{}", config::EMBEDDED_DEFAULT);
            ExitCode::SUCCESS
        }
        Command::Cache(args) => cache_cmd::run(args),
        Command::ClientConfig(args) => client_config::run(args),
        Command::Prefetch(args) => prefetch::run(args),
    }
}
