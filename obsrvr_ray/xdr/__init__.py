"""Our own XDR decoding, driven by the type table read from stellar-sdk (the reference)."""
