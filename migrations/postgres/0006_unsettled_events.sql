-- Events by status, for the statuses worth finding: pending and failed. Delivered events, the
-- bulk of a log, are found through the time index instead; leaving them out of this one saves
-- every delivered event an index entry.
DROP INDEX fermion_events_by_status;
CREATE INDEX fermion_events_unsettled ON fermion_events (status, timestamp)
    WHERE status <> 'delivered';
