-- Events by status, for the statuses worth finding: pending and failed. Delivered events, the
-- bulk of a log, are found through the time index instead; leaving them out of this one saves
-- every delivered event an index entry.
DROP INDEX events_by_status;
CREATE INDEX events_unsettled ON events (status, timestamp_us) WHERE status <> 'delivered';
