//! A session's life beside its upload: the sessions live now, the ones created ahead, the
//! processing that follows an upload, recovery after a stop, and the sweeper.
//!
//! - [`lifecycle`] every status transition, and what each one sets.
//! - [`live`] sessions being received or processed, and the one connection attached to each.
//! - [`reserve`] sessions created ahead of their upload (`POST /api/sessions`).
//! - [`processing`] starts a session's pipeline on the bounded workers and relays its events.
//! - [`recovery`] at start, in the background: unfinished sessions repaired and detached,
//!   interrupted processing run again.
//! - [`bout`] the cameras of a bout recorded by several: who may join it.
//! - [`cleanup`] the sweeper: abandon, expire, delete.
//! - [`resave`] a state the disk refused, saved again until it is; [`session_index`] every
//!   session's metadata in memory; [`session_id`] ids and resume tokens.

pub mod bout;
pub mod cleanup;
pub mod lifecycle;
pub mod live;
pub mod processing;
pub mod recovery;
pub mod resave;
pub mod reserve;
pub mod session_id;
pub mod session_index;
