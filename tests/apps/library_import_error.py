"""An app whose import fails inside a library (the standard library's json): the start-up
error must name this file's line, not json/decoder.py."""

import json

CONFIG = json.loads("{not json")

app = None
