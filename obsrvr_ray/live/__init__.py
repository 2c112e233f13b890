"""The live half, Ray-free: the recent-ledger buffer subscribers read from, subscription
filters and frames, the follower's loop over Stellar RPC (follow.LedgerFollower) and the
service that runs it and commits what it reads (service.FollowerService)."""
