"""The live half, Ray-free: the recent-ledger buffer subscribers read from, subscription
filters and frames, and the follower's loop over Stellar RPC."""
