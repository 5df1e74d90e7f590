"""``python -m bench.server [flags]``: the server benchmark with its own flags."""

import sys

from bench.server.run import main

sys.exit(main())
