//! What happens to sessions, told to whoever follows them: the event bus ([`events`]) and
//! its subscribers, [`watch`] (Server-Sent Events and the live view) and [`webhooks`]
//! (signed deliveries from a disk outbox).

pub mod events;
pub mod watch;
pub mod webhooks;
