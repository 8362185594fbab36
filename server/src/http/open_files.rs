//! The process's open-file limit: every connection, session file and watcher takes a
//! descriptor, and the common soft default (1024) is far below what `--max-connections`
//! allows. At start the soft limit is raised to the hard one, and a limit still too low for
//! the configured connections is said plainly.

use rustix::process::{getrlimit, setrlimit, Resource};

/// Descriptors kept for what is not a connection: session files, the listener, logs.
const RESERVED: u64 = 256;

/// Raises the soft open-file limit to the hard limit; returns the limit now in force
/// (`None`: unlimited). Warns when it leaves fewer descriptors than `max_connections` needs.
pub fn raise(max_connections: u64) -> Option<u64> {
    let before = getrlimit(Resource::Nofile);
    let mut wanted = before;
    wanted.current = before.maximum;
    let now = if before.current == before.maximum {
        before.current
    } else {
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => getrlimit(Resource::Nofile).current,
            Err(err) => {
                tracing::warn!(
                    "cannot raise the open-file limit from {:?} to {:?}: {err}",
                    before.current,
                    before.maximum
                );
                before.current
            }
        }
    };
    match now {
        Some(limit) if limit < max_connections.saturating_add(RESERVED) => tracing::warn!(
            "the open-file limit is {limit}, too low for --max-connections {max_connections} \
             plus {RESERVED} for session files: raise it (ulimit -n, or LimitNOFILE= in a \
             systemd unit) or lower --max-connections"
        ),
        Some(limit) => tracing::debug!("open-file limit: {limit}"),
        None => tracing::debug!("open-file limit: unlimited"),
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_one() {
        let now = raise(1);
        assert_eq!(now, getrlimit(Resource::Nofile).maximum);
    }
}
