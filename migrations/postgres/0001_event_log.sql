-- The event log of `PostgresLogStore`, in the schema it connects to.

-- One row per event, with its exact body. `seq` is the order events were appended in; the
-- status and attempt count are kept up to date by every recorded attempt, so lists, filters
-- and exports need no join.
CREATE TABLE fermion_events (
    seq BIGSERIAL PRIMARY KEY,
    event_unique_id TEXT NOT NULL UNIQUE,
    timestamp TIMESTAMPTZ NOT NULL,
    event_type TEXT NOT NULL,
    is_test_event BOOLEAN NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX fermion_events_by_time ON fermion_events (timestamp, seq);
CREATE INDEX fermion_events_by_type ON fermion_events (event_type, timestamp);
CREATE INDEX fermion_events_by_status ON fermion_events (status, timestamp);

-- One row per endpoint an event goes to (never the endpoint's secret), with its claim.
CREATE TABLE fermion_deliveries (
    event_seq BIGINT NOT NULL REFERENCES fermion_events (seq) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    endpoint_id TEXT NOT NULL,
    url TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    next_attempt_at TIMESTAMPTZ,
    -- Who is attempting it, and until when nobody else may (see `LogStore::claim_due`).
    claim_token TEXT,
    claimed_until TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (event_seq, endpoint_id)
);
CREATE INDEX fermion_deliveries_due ON fermion_deliveries (next_attempt_at)
    WHERE state = 'pending';

-- Every attempt, in the order recorded.
CREATE TABLE fermion_attempts (
    id BIGSERIAL PRIMARY KEY,
    event_seq BIGINT NOT NULL,
    endpoint_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    duration_ms BIGINT NOT NULL,
    http_status INTEGER,
    response_snippet TEXT,
    error_kind TEXT,
    error_message TEXT,
    attempt_trigger TEXT NOT NULL,
    FOREIGN KEY (event_seq, endpoint_id) REFERENCES fermion_deliveries (event_seq, endpoint_id)
        ON DELETE CASCADE
);
CREATE INDEX fermion_attempts_by_event ON fermion_attempts (event_seq, id);
