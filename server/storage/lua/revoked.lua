-- revoked: whether a token has been revoked (auth.py). Read-only.
-- KEYS[1] the token's revocation record (<prefix>revoked:<jti>)
-- Returns 1 if revoked, else 0.
return redis.call('EXISTS', KEYS[1])
