"""The unit of a backfill: a chunk of ledgers, read, turned into rows and committed as one."""
