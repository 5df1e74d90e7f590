"""An app module that fails at import time."""

raise RuntimeError("database unreachable")
