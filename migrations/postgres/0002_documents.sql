-- Endpoints (secrets included) and pending checkouts, as JSON documents by kind and key.
CREATE TABLE fermion_documents (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    owner TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX fermion_documents_by_owner ON fermion_documents (kind, owner);
