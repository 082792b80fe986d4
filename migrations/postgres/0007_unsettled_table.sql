-- Pending and failed events, by status and time: the status filter's index, in a table of its
-- own. While an index of `fermion_events` covered `status`, every recorded attempt wrote a new
-- version of the event's row (its body included) and an entry in each of its indexes. Now no
-- index covers a column an attempt changes, so PostgreSQL updates the row in place on its
-- page (a HOT update) and logs only the changed tail of the row. The store keeps this table in
-- step with `fermion_events.status` in the statements that change it; retention deletes from
-- both by time. No foreign key: appends skip its check, and a row left behind by someone's own
-- SQL is harmless, since the filter reads events through it.
CREATE TABLE fermion_unsettled_events (
    seq BIGINT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('pending', 'failed')),
    timestamp TIMESTAMPTZ NOT NULL
);
CREATE INDEX fermion_unsettled_events_by_status
    ON fermion_unsettled_events (status, timestamp, seq);
INSERT INTO fermion_unsettled_events (seq, status, timestamp)
    SELECT seq, status, timestamp FROM fermion_events WHERE status <> 'delivered';
DROP INDEX fermion_events_unsettled;
-- Room on each page for a new version of one of its rows, so that an attempt's update stays
-- on the page (pruning reclaims the old versions): 99% of them did under `emit_postgres`.
ALTER TABLE fermion_events SET (fillfactor = 90);
