"""Settings read at import, the way many apps do (see nested_import_error.py)."""

import os

DATABASE_URL = os.environ["CTXSERVER_TEST_SURELY_UNSET_DATABASE_URL"]
