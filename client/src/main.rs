//! The `referee-client` binary: parses the command line and streams a session with
//! [`referee_client::run`], or runs `status` / `list` / `watch` against the server's HTTP API.
//! Exit code 0 on success, 1 on failure (with one `error: ...` line), 2 for usage errors, 130
//! after Ctrl-C during an upload (with the line that says how to resume it).

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use referee_client::results::{list_text, status_text, Api};
use referee_client::{init_logging, run_bout, Cli, ClientError, Command};
use referee_protocol::api::{SessionStatus, SessionView};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // One TLS provider for the whole process (ring), whatever other crates of a workspace
    // build enable in rustls.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
        (None, Some(mut args)) => {
            init_logging(args.verbose);
            if args.token.is_none() {
                args.token = std::env::var("REFEREE_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty());
            }
            run_bout(args).await.map(|_| ())
        }
        (None, None) => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Ctrl-C: the shell's code for SIGINT.
            let code = match err {
                ClientError::Interrupted { .. } => ExitCode::from(130),
                _ => ExitCode::FAILURE,
            };
            // The error may quote the server: never a control character on the terminal.
            let text = format!("{:#}", anyhow::Error::from(err));
            eprintln!("error: {}", referee_protocol::text::escape_controls(&text));
            code
        }
    }
}

/// For `status` of an interrupted upload (`detached`): until when it may be resumed and,
/// when this client started it, the command that does.
fn resume_text(session: &SessionView) -> String {
    if session.status != SessionStatus::Detached {
        return String::new();
    }
    let mut out = String::new();
    if let Some(until) = session.resumable_until {
        let until = until
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        out.push_str(&format!("  resumable: until {until}\n"));
    }
    let id = &session.id;
    let command = referee_client::saved::find(id).and_then(|saved| saved.resume_command);
    match command {
        Some(command) => out.push_str(&format!("  resume:    {command}\n")),
        None => out.push_str(&format!(
            "  resume:    run the command that started it again, with --resume {id}, on the machine that started it\n"
        )),
    }
    out
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
            let session = api.session(&session_id)?;
            print!("{}", status_text(&api, &session));
            print!("{}", resume_text(&session));
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
        Command::Create {
            server,
            name,
            access,
        } => {
            let api = Api::new(&server, access.token.as_deref(), access.ca.as_deref())?;
            let created = api.create_session(&name)?;
            let id = &created.session.id;
            println!("Created session {id}");
            if let Ok(page) = referee_client::endpoint::dashboard_url(&server, id) {
                println!("Dashboard: {page}");
            }
            println!("Stream into it with: referee-client {server} --video FILE --session {id}");
        }
        Command::Delete {
            server,
            session_id,
            access,
        } => {
            let api = Api::new(&server, access.token.as_deref(), access.ca.as_deref())?;
            api.delete_session(&session_id)?;
            println!("Deleted session {session_id} and its files");
        }
        Command::ScoringBox(args) => {
            referee_client::scoring_box::run(&args)?;
        }
    }
    Ok(())
}
