"""Sinks: where ledgers and tables are written (data lake, Parquet/JSON/CSV files)."""
