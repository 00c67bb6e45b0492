-- Event callbacks to the tenant (issue 9, "Event callbacks to the tenant"): the tenant's
-- webhook endpoints, one outbox row per event and endpoint, and every delivery attempt.
-- Forward-only: never edit this file once applied.

-- webhook_endpoints: where a tenant wants its events POSTed.
CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- tenant_id: the owner; every query is scoped by it.
    tenant_id            uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- url: http(s) URL the events are POSTed to (checked against private addresses).
    url                  text NOT NULL,
    -- events: the event types delivered to it (message.received, ...), at least one.
    events               text[] NOT NULL,
    -- description: free text of the tenant ('' when unset).
    description          text NOT NULL DEFAULT '',
    -- enabled: false stops new deliveries (deliveries already stored still run).
    enabled              boolean NOT NULL DEFAULT true,
    -- secret_sealed: the signing secret ("whsec_..."), AES-256-GCM sealed with
    -- ENCRYPTION_KEY like bot tokens (telegram/seal.go, the endpoint id as associated data).
    secret_sealed        bytea NOT NULL,
    -- previous_secret_sealed: the secret replaced by the last rotate-secret, still used to
    -- sign (a second v1= entry) until previous_secret_expires_at; NULL when none.
    previous_secret_sealed     bytea,
    previous_secret_expires_at timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- Listing a tenant's endpoints newest first (cursor pagination) and loading its subscriptions.
CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id, created_at DESC, id DESC);

-- webhook_deliveries: the outbox. One row per (event, endpoint), inserted in the same
-- transaction as the change that caused the event; the worker's delivery loop POSTs it.
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- endpoint_id: the endpoint (webhook_endpoints.id). No foreign key on purpose: an event
    -- emitted while its endpoint is being deleted must not fail the transaction of the
    -- change (an inbound batch); deleting an endpoint deletes its deliveries, and the
    -- delivery loop drops a delivery whose endpoint is gone.
    endpoint_id     uuid NOT NULL,
    -- event_id: the event's id (the body's "id", header Botfleet-Event-Id), the same for
    -- every endpoint that receives the event: a receiver dedupes on it.
    event_id        uuid NOT NULL,
    -- event_type: message.received, message.sent, ...
    event_type      text NOT NULL,
    -- data: the event's "data" object.
    data            jsonb NOT NULL,
    -- status: pending (to deliver, or being delivered), succeeded (a 2xx answer), failed
    -- (no 2xx answer within the retry window, 24 h).
    status          text NOT NULL DEFAULT 'pending',
    -- attempts: POSTs tried so far (counted when claimed, before connecting).
    attempts        integer NOT NULL DEFAULT 0,
    -- next_attempt_at: when a pending delivery is due; a claim pushes it past the
    -- attempt's lease, so a worker that dies mid-attempt leaves it due again (at least once).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- created_at: when the event happened (the body's created_at); retries stop 24 h later.
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- completed_at: when it succeeded or failed for good (NULL while pending).
    completed_at    timestamptz
);
-- The delivery loop's claim: due pending rows.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- Pruning of deliveries completed more than 30 days ago (callbacks.Prune).
CREATE INDEX webhook_deliveries_completed_idx ON webhook_deliveries (completed_at) WHERE status <> 'pending';
-- GET /webhook-endpoints/{id}/deliveries/ newest first.
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);

-- webhook_delivery_attempts: one row per POST tried.
CREATE TABLE webhook_delivery_attempts (
    id            bigserial PRIMARY KEY,
    delivery_id   uuid NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    -- attempted_at: when the attempt started.
    attempted_at  timestamptz NOT NULL,
    -- succeeded: a 2xx answer.
    succeeded     boolean NOT NULL,
    -- response_code: the HTTP status answered; NULL when there was none (refused, timeout).
    response_code integer,
    -- error: why it failed ('' on success), e.g. "HTTP 500", "timeout", "private address refused".
    error         text NOT NULL DEFAULT '',
    -- duration_ms: how long the attempt took, in milliseconds.
    duration_ms   integer NOT NULL
);
CREATE INDEX webhook_delivery_attempts_delivery_idx ON webhook_delivery_attempts (delivery_id, id);
