-- Each endpoint's due deliveries in the order claims take them (due time, then event, then
-- position). A claim walks the endpoints with pending work through it, then reads only the
-- next few of each endpoint that has room: a backlog behind an endpoint at its cap is never
-- read.
CREATE INDEX deliveries_due_by_endpoint
    ON deliveries (endpoint_id, next_attempt_us, event_seq, position)
    WHERE state = 'pending';
DROP INDEX deliveries_due;
