"""A room's moderation HTTP API: blocks, moderators, audit log (server/live/moderation.py)."""

from server.web.moderation.routes import routes

__all__ = ["routes"]
