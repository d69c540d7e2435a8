-- Provisioning events. An event row is written in the transaction of the change it reports,
-- so an event exists if and only if its change committed (an outbox). Its columns are the
-- event's data; the CloudEvents JSON is made at delivery. `id` orders the events of a client
-- (SQLite runs one write transaction at a time; AUTOINCREMENT never reuses an id).
CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    type           TEXT NOT NULL,
    at             INTEGER NOT NULL,
    client_id      TEXT NOT NULL,
    software_id    TEXT NOT NULL,
    org_id         TEXT NOT NULL,
    dcr_version    TEXT NOT NULL,
    action         TEXT NOT NULL,
    interaction_id TEXT,
    -- for client.updated: the names of the metadata fields that changed, a JSON array
    changed        TEXT
);
CREATE INDEX events_at_idx ON events (at);

-- One row per (event, webhook configured when the event was written). `state` is pending,
-- delivered or failed; a replica works on a row while it holds its lease (`lease_owner` until
-- `lease_until`), so that replicas sharing the database do not deliver an event twice.
CREATE TABLE event_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    webhook     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    done_at     INTEGER
);
CREATE INDEX event_deliveries_event_id_idx ON event_deliveries (event_id);
-- The oldest pending delivery of each (webhook, client) goes first.
CREATE INDEX event_deliveries_pending_idx ON event_deliveries (webhook, client_id, id)
    WHERE state = 'pending';
CREATE INDEX event_deliveries_state_idx ON event_deliveries (state, done_at);
