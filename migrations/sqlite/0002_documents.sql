-- Endpoints (secrets included) and pending checkouts, as JSON documents by kind and key.
CREATE TABLE documents (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    owner TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX documents_by_owner ON documents (kind, owner);
