"""Web: the HTTP API, pages and static files, the demo, health checks, problem responses."""
