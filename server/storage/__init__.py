"""Storage: the RESP client, the Lua script runner and scripts, key names, embedded servers,
Postgres and migrations."""
