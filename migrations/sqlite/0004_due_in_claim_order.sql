-- Due deliveries in the order claims take them (due time, then event, then position): a claim
-- reads as many as it hands out instead of sorting the whole backlog first.
CREATE INDEX deliveries_due_in_order ON deliveries (next_attempt_us, event_seq, position)
    WHERE state = 'pending';
DROP INDEX deliveries_due;
