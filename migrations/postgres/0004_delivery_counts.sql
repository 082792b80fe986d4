-- How many of an event's deliveries are pending and how many failed. Recording an attempt
-- moves one delivery between these counts with arithmetic on the event's row, which
-- PostgreSQL applies to the row's newest version: concurrent attempts on one event's
-- deliveries keep its status right in one statement each, without locking the event first.
ALTER TABLE fermion_events
    ADD COLUMN pending_deliveries INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN failed_deliveries INTEGER NOT NULL DEFAULT 0;
UPDATE fermion_events e SET
    pending_deliveries = (SELECT count(*) FROM fermion_deliveries d
        WHERE d.event_seq = e.seq AND d.state = 'pending'),
    failed_deliveries = (SELECT count(*) FROM fermion_deliveries d
        WHERE d.event_seq = e.seq AND d.state = 'failed');
