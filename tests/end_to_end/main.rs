//! End-to-end tests: the real server on port 0, the real client binary, raw WebSocket peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod client_errors;
mod client_strings;
mod dashboard;
mod disconnects;
mod hostile_http;
mod limits;
mod load;
mod passthrough;
mod processing_limits;
mod results;
mod resume;
mod scopes;
mod score_timeline;
mod signal_errors;
mod streaming;
mod tls;
mod watch;
mod watch_command;
mod webhooks;
