-- The session registry of several servers sharing one store (`--registry postgres://...`).
-- One row per session: its record (what `session.json` holds), the frames acknowledged to its
-- client, and the lease of the server receiving its upload.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    -- The session's record (`store::SessionMeta`, as JSON).
    record JSONB NOT NULL,
    -- Frames durably stored and acknowledged: changed only by the lease holder, and only from
    -- the count it last saw (compare-and-set), so that two servers never both append.
    acked_frames BIGINT NOT NULL DEFAULT 0,
    -- The server receiving the upload (its node name) and the lease it took (a random number
    -- per frame writer), valid until `lease_until` unless renewed.
    lease_node TEXT,
    lease_id BIGINT,
    lease_until TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
