-- What the servers of one registry share besides the sessions' records: the processing queue,
-- the tasks only one of them runs at a time, and which server delivers each webhook event.

-- A session waiting for, or under, processing: one row while it is `processing`, held by the
-- server running it until `lease_until` (renewed while it runs). A row whose lease ran out
-- belongs to a server that stopped: another takes it over (FOR UPDATE SKIP LOCKED).
CREATE TABLE jobs (
    session_id TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX jobs_by_lease ON jobs (lease_until);

-- A task run by one server of all (the sweeper): who runs it, until when.
CREATE TABLE leaders (
    task TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);

-- The webhook events a server has taken on to deliver, by idempotency key: each event is
-- delivered by the one server that inserted its row.
CREATE TABLE webhook_claims (
    event_key TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
