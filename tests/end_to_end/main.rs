//! End-to-end tests: the real server on port 0, the real client binary, raw WebSocket peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod client_errors;
mod client_messages;
mod client_strings;
mod dashboard;
mod disconnects;
mod frame_times;
mod hostile_http;
mod limits;
mod load;
mod passthrough;
mod processing_limits;
mod results;
mod resume;
mod resume_safety;
mod scopes;
mod scoring_box;
mod server_logs;
mod signal_errors;
mod storage_faults;
mod streaming;
mod tls;
mod watch;
mod watch_command;
mod webhooks;
