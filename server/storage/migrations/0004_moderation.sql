-- Moderation (server/live/moderation.py): a room's moderators, its blocked viewers and an audit
-- log of every change. Postgres is the system of record; Redis holds the spend gate's copy of the
-- blocks (server/money/blockgate.py), rebuilt from `room_blocks` when it is missing.
CREATE TABLE room_moderators (
    room        text NOT NULL,
    user_id     text NOT NULL,
    granted_by  text NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, user_id)
);

CREATE TABLE room_blocks (
    room        text NOT NULL,
    user_id     text NOT NULL,
    reason      text NOT NULL,
    blocked_by  text NOT NULL,
    blocked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, user_id)
);

CREATE TABLE moderation_audit (
    id          bigserial PRIMARY KEY,
    room        text NOT NULL,
    actor       text NOT NULL,
    target      text NOT NULL,
    action      text NOT NULL CHECK (action IN ('block', 'unblock', 'moderator_add',
                                                 'moderator_remove')),
    reason      text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moderation_audit_room ON moderation_audit (room, id);
