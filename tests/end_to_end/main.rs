//! End-to-end tests: the real server on port 0, the real client binary, raw WebSocket peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod client_errors;
mod dashboard;
mod disconnects;
mod limits;
mod load;
mod passthrough;
mod results;
mod resume;
mod scopes;
mod signal_errors;
mod storage_faults;
mod streaming;
mod tls;
mod watch;
mod watch_command;
mod webhooks;
