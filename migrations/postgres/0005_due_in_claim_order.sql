-- Due deliveries in the order claims take them (due time, then event, then position): a claim
-- reads as many as it hands out instead of sorting the whole backlog first.
CREATE INDEX fermion_deliveries_due_in_order
    ON fermion_deliveries (next_attempt_at, event_seq, position) WHERE state = 'pending';
DROP INDEX fermion_deliveries_due;
