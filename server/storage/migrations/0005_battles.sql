-- Gift battles (server/live/battles.py): two live rooms and a time window. Postgres holds the
-- durable record (who invited whom, the window, the final scores and result); the running
-- scores live in each room's Redis slot (its side of the battle) until the battle is settled.
-- Times of the window are Redis-clock milliseconds, the clock that scores gifts and stamps the
-- ledger (`ledger_tx.stream_ms`).
CREATE TABLE battles (
    id           text PRIMARY KEY,
    room_a       text NOT NULL,         -- the inviter's room
    creator_a    text NOT NULL,
    room_b       text NOT NULL,         -- the invited room
    creator_b    text NOT NULL,
    state        text NOT NULL
                 CHECK (state IN ('invited', 'accepted', 'running', 'ended', 'cancelled')),
    duration_s   integer,
    start_ms     bigint,
    end_ms       bigint,
    score_a      bigint,
    score_b      bigint,
    top_a        jsonb,                 -- each side's top gifter {user, name, coins}, when any
    top_b        jsonb,
    result       text CHECK (result IN ('win', 'draw', 'cancelled')),
    winner       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (room_a <> room_b)
);
-- The open battles of a room (at most one: checked under an advisory lock per room), and the
-- periodic sweep's "running past its end".
CREATE INDEX battles_room_a ON battles (room_a) WHERE state IN ('invited', 'accepted', 'running');
CREATE INDEX battles_room_b ON battles (room_b) WHERE state IN ('invited', 'accepted', 'running');
CREATE INDEX battles_due ON battles (end_ms) WHERE state = 'running';
