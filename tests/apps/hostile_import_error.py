"""An app module whose import fails with a multi-line message (start-up must stay one line)."""

raise ValueError("first line of the reason\nsecond line\n  File \"fake.py\", line 1")
