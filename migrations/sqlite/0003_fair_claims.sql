-- The URL each attempt went to: an endpoint's URL may change between attempts.
ALTER TABLE attempts ADD COLUMN url TEXT;

-- Claimed deliveries by endpoint, so a claim counts each endpoint's live claims against its
-- cap without reading the backlog. Small: a claim is cleared when its attempt is recorded.
CREATE INDEX deliveries_claimed ON deliveries (endpoint_id, claimed_until_us)
    WHERE claim_token IS NOT NULL;
