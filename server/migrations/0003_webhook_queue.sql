-- The webhook events as one queue the servers share: with its claim, each event keeps its body
-- and its delivery to each URL (`entry`, as a server's outbox file holds it), under a lease
-- the delivering server renews until every URL has an outcome (`done_at`). An event whose
-- lease ran out before it was done belongs to a server that stopped: another takes it over
-- and sends it to the URLs that have not had it, with the same idempotency key.
ALTER TABLE webhook_claims
    ADD COLUMN entry JSONB,
    ADD COLUMN lease_until TIMESTAMPTZ,
    ADD COLUMN done_at TIMESTAMPTZ;
-- Claims from before this migration have no body to send again: their servers delivered them
-- or still hold them in their own outbox (sent at their next start).
UPDATE webhook_claims SET done_at = claimed_at;
CREATE INDEX webhook_claims_undone ON webhook_claims (lease_until) WHERE done_at IS NULL;
