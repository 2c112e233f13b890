"""Ray actors and tasks: the only place, with jobs/ and serve/, that imports Ray."""
