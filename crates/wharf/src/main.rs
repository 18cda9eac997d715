//! The `wharf` binary: the command line, configuration loading and the wiring of the crates.

mod cache_cmd;
mod client_config;
mod config;
mod logwriter;
mod mirror;
mod output;
mod prefetch;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::Config;

/// jemalloc rather than glibc's malloc, which kept what fills and thousands of connections had
/// freed: glibc's per-thread arenas hold freed chunks, so RSS crept by MiBs under steady load
/// and 1000 idle connections left 30 MiB behind once they closed. jemalloc's background thread
/// returns freed pages to the OS within seconds (`.cargo/config.toml`), and pages of a buffer
/// that were never written stay unresident (hyper's 8 KiB buffers of an idle connection).
/// `cargo bench -p wharf-e2e --bench memory` measures both (issue 13).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// The configuration file (TOML; `wharf default-config` prints a commented one)
        /// [default: the embedded default configuration].
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and name the first bad field.
    CheckConfig {
        /// The configuration file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
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
                for w in c.warnings() {
                    eprintln!("wharf: warning: {w}");
                }
                output::finish(
                    "wharf check-config",
                    &format!(
                        "{}: ok ({}, store in {})\n",
                        file.display(),
                        count(c.upstream.len(), "upstream", "upstreams"),
                        c.cache.dir.display()
                    ),
                    ExitCode::SUCCESS,
                )
            }
            Err(e) => {
                eprintln!("wharf: {e}");
                ExitCode::from(2)
            }
        },
        Command::DefaultConfig => output::finish(
            "wharf default-config",
            config::EMBEDDED_DEFAULT,
            ExitCode::SUCCESS,
        ),
        Command::Cache(args) => cache_cmd::run(args),
        Command::ClientConfig(args) => client_config::run(args),
        Command::Prefetch(args) => prefetch::run(args),
    }
}

/// `1 upstream`, `2 upstreams`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(1, "upstream", "upstreams"), "1 upstream");
        assert_eq!(count(0, "upstream", "upstreams"), "0 upstreams");
        assert_eq!(count(3, "upstream", "upstreams"), "3 upstreams");
    }

    /// `wharf SUB --help` explains every argument: clap prints a bare `--config <CONFIG>`
    /// for one without a doc comment.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (the subcommand)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "wharf", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
