"""``python -m server``: monkey-patch with gevent before anything else is imported.

Nothing may come before these two lines: a module that imports ``threading``, ``socket`` or
``ssl`` first keeps the unpatched objects — a ``threading.local`` created then is shared by
every request in the worker.  (``server/__init__.py`` runs before this file; it is kept free
of imports for exactly that reason.)
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402 - after the patch, on purpose

from server.cli import main  # noqa: E402 - after the patch, on purpose

sys.exit(main())
