"""The live app's serving shell: the FastAPI ingress, its security adapters and the Arrow Flight server."""
