//! The `referee-client` binary: parses the command line and streams a session with
//! [`referee_client::run`], or runs `status` / `list` / `watch` against the server's HTTP API.
//! Exit code 0 on success, 1 on failure (with one `error: ...` line), 2 for usage errors.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use referee_client::results::{list_text, status_text, Api};
use referee_client::{init_logging, run, Cli, ClientError, Command};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match (cli.command, cli.stream) {
        (Some(command), _) => {
            init_logging(false);
            tokio::task::spawn_blocking(move || ask(command))
                .await
                .unwrap_or_else(|err| {
                    Err(ClientError::Protocol(format!(
                        "the request thread failed: {err}"
                    )))
                })
        }
        (None, Some(args)) => {
            init_logging(args.verbose);
            run(args).await.map(|_| ())
        }
        (None, None) => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The error may quote the server: never a control character on the terminal.
            let text = format!("{:#}", anyhow::Error::from(err));
            eprintln!("error: {}", referee_protocol::text::escape_controls(&text));
            ExitCode::FAILURE
        }
    }
}

/// `status` and `list`: one request to the HTTP API, printed for people; `watch`: the
/// session's events until it is complete or failed.
fn ask(command: Command) -> Result<(), ClientError> {
    match command {
        Command::Status {
            server,
            session_id,
            access,
        } => {
            let api = Api::new(&server, access.token.as_deref(), access.ca.as_deref())?;
            print!("{}", status_text(&api, &api.session(&session_id)?));
        }
        Command::List { server, access } => {
            let api = Api::new(&server, access.token.as_deref(), access.ca.as_deref())?;
            print!("{}", list_text(&api.sessions()?));
        }
        Command::Watch {
            server,
            session_id,
            timeout,
            access,
        } => {
            let api = Api::new(&server, access.token.as_deref(), access.ca.as_deref())?;
            referee_client::watch::watch(&api, &session_id, timeout)?;
        }
        Command::ScoringBox(args) => {
            referee_client::scoring_box::run(&args)?;
        }
    }
    Ok(())
}
