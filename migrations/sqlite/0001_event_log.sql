-- The event log of `FileLogStore`. Times are microseconds since the Unix epoch, UTC.

-- One row per event, with its exact body. `seq` is the order events were appended in; the
-- status, attempt count and last response are kept up to date by every recorded attempt, so
-- lists, filters and exports need no join.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_unique_id TEXT NOT NULL UNIQUE,
    timestamp_us INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    is_test_event INTEGER NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_by_time ON events (timestamp_us, seq);
CREATE INDEX events_by_type ON events (event_type, timestamp_us);
CREATE INDEX events_by_status ON events (status, timestamp_us);

-- One row per endpoint an event goes to (never the endpoint's secret), with its claim.
CREATE TABLE deliveries (
    event_seq INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    endpoint_id TEXT NOT NULL,
    url TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    next_attempt_us INTEGER,
    -- Who is attempting it, and until when nobody else may (see `LogStore::claim_due`).
    claim_token TEXT,
    claimed_until_us INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (event_seq, endpoint_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (next_attempt_us) WHERE state = 'pending';

-- Every attempt, in the order recorded.
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq INTEGER NOT NULL,
    endpoint_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    started_us INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    http_status INTEGER,
    response_snippet TEXT,
    error_kind TEXT,
    error_message TEXT,
    attempt_trigger TEXT NOT NULL,
    FOREIGN KEY (event_seq, endpoint_id) REFERENCES deliveries (event_seq, endpoint_id)
        ON DELETE CASCADE
);
CREATE INDEX attempts_by_event ON attempts (event_seq, id);
