"""Money: the wallet, the ledger and its flusher, reconcile, payments, the gift catalog, stream
lifecycle."""
