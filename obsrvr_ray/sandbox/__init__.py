"""The sandbox network: ledgers of our own for demos, scale tests and error cases, and a getLedgers server."""
