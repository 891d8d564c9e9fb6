"""Several server processes on one port: a supervisor and its workers (`serve --workers N`).

The supervisor (supervisor.py) starts the embedded Redis/Postgres once, migrates once, reserves the
port, and keeps N workers (worker.py) running: each a full server (its own hub, flusher, event
loop) listening on its own SO_REUSEPORT socket of that port (sockets.py), restarted with backoff
when it dies, drained together on SIGTERM. `run.serve` chooses between that and one plain process.
"""
