"""The socket edge: the WebSocket session, its bounded writer and transport, rate limits, drain."""
