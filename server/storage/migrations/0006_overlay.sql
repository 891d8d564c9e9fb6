-- Overlays (server/live/overlay_keys.py, overlay_settings.py): each room's long-lived overlay key
-- and its creator's overlay settings. Postgres is the system of record; Redis caches both in the
-- room's overlay hash (`keys.room_overlay`), refilled from here when it is missing.
CREATE TABLE overlay_keys (
    room        text PRIMARY KEY,
    creator     text NOT NULL,
    key         text NOT NULL UNIQUE,     -- ok1.<secret>.<room>: shown to its creator again
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE overlay_settings (
    room        text PRIMARY KEY,
    settings    jsonb NOT NULL,           -- the `overlay_settings` message's fields but `room`
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The creator dashboard's earnings per stream (server/live/creator_earnings.py): each stream's
-- start and end, recorded as the room goes live and ends; diamonds are summed from the ledger.
CREATE TABLE creator_streams (
    room        text NOT NULL,
    creator     text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    PRIMARY KEY (room, started_at)
);
CREATE INDEX creator_streams_creator ON creator_streams (creator, started_at DESC);
