"""Gift battles over HTTP: invite, accept, start, cancel, and a room's battle
(server/live/battles.py)."""

from server.web.battles.routes import routes

__all__ = ["routes"]
