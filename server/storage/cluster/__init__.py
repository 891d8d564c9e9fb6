"""Redis Cluster mode (docs/scaling.md): the slot map, the per-master script runner, the per-node
ledger reader. Single-Redis mode does not import this package."""
