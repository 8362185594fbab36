//! The store interface blocks; `object_store` and the registry's `sqlx` are async. [`Bridge`]
//! runs one request on the server's runtime and waits for it on the calling (blocking)
//! thread, with a deadline, so that a store call from a processing thread or `spawn_blocking`
//! never hangs on an object store or a database that stopped answering.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

/// Why a request to the object store or the registry did not give its answer.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    /// The object store answered with an error.
    #[error("{0}")]
    Store(#[from] object_store::Error),
    /// The registry's database answered with an error.
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    /// No answer within the deadline (the request is dropped).
    #[error("no answer within {} s: check that it is reachable", .0.as_secs())]
    Deadline(Duration),
    /// The runtime is shutting down.
    #[error("the server is shutting down")]
    Stopped,
}

impl Failed {
    /// Whether the object store said that the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Failed::Store(object_store::Error::NotFound { .. }))
    }
}

/// Runs object-store and registry requests on a runtime, for blocking callers.
#[derive(Debug, Clone)]
pub struct Bridge {
    runtime: Handle,
    deadline: Duration,
}

impl Bridge {
    /// Requests run on `runtime`; each must answer within `deadline`.
    pub fn new(runtime: Handle, deadline: Duration) -> Self {
        Self { runtime, deadline }
    }

    /// Runs `request` and waits for its answer. Call it from a blocking thread (a processing
    /// thread, `spawn_blocking`), never from an async task.
    pub fn run<T, E, F>(&self, request: F) -> Result<T, Failed>
    where
        T: Send + 'static,
        E: Into<Failed>,
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let deadline = self.deadline;
        let task = self.runtime.spawn(async move {
            let answer = match tokio::time::timeout(deadline, request).await {
                Ok(answer) => answer.map_err(Into::into),
                Err(_) => Err(Failed::Deadline(deadline)),
            };
            let _ = tx.send(answer);
        });
        // A little longer than the task's own deadline, which normally answers first.
        let wait = || rx.recv_timeout(deadline + Duration::from_secs(1));
        // On a runtime's worker thread (a call from async code), let the runtime move its
        // other tasks elsewhere while this one waits.
        let answer = match Handle::try_current() {
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        match answer {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                task.abort();
                Err(Failed::Deadline(deadline))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Failed::Stopped),
        }
    }
}
