"""The creator dashboard (`/creator`) and its HTTP API: the room, its overlay key and settings,
earnings per stream (server/web/creator/routes.py; docs/creator.md)."""

from server.web.creator.routes import routes

__all__ = ["routes"]
