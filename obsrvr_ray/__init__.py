"""obsrvr-ray: Stellar ledgers to token-transfer analytics on Ray."""

__version__ = "0.1.0"
