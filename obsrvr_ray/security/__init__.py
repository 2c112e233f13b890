"""Authentication and authorisation for the live app, in plain Python (no Ray, no web framework).

One concern per module: `policy` (roles, permissions, the principal), `apikeys` (key format and
hashing), `keystore` (the hashed keys on disk), `tokens` (JWT verification), `ratelimit` (token
buckets), `clientip` (who the caller is behind proxies), `settings` (configuration), `gate` (the
order of checks for one call), `tls` (certificates for tests and demos), `cli` (`obsrvr-ray keys`).
The web and Flight adapters live in `obsrvr_ray/serve/http_security.py` and `obsrvr_ray/serve/flight_auth.py`.
"""
