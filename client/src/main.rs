//! The `referee-client` binary: parses the command line and runs [`referee_client::run`].
//! Exit code 0 on success, 1 on failure (with one `error: ...` line), 2 for usage errors.

use std::process::ExitCode;

use clap::Parser;
use referee_client::{init_logging, run, Args};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.verbose);
    match run(args).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {:#}", anyhow::Error::from(err));
            ExitCode::FAILURE
        }
    }
}
