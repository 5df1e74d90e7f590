"""An app whose import never finishes (a connection without a timeout, at import time): the
watchdog must end the boot after --timeout and say where it hung."""

import time

time.sleep(3600)  # gevent-patched: the loop runs, but the worker never reports ready

app = None
