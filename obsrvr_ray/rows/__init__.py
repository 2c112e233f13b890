"""Row builders: decoded ledgers -> rows of the Arrow tables in obsrvr_ray.schema."""
