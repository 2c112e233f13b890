"""Ray jobs: drivers submitted with `ray job submit` or run from the command line."""
