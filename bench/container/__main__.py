"""``python -m bench.container [flags]``: the container benchmark (see the package)."""

import sys

from bench.container.run import main

sys.exit(main())
