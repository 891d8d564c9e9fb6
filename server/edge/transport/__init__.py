"""The bytes on the wire: giftwire's own HTTP gate and WebSocket protocol for uvicorn, and the
limits they enforce where a client's bytes arrive."""
