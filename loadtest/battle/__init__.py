"""The `battle` scenario: a gift battle under load, its scores checked against the ledger."""
