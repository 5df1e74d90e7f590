"""An app whose import fails two modules deep, in a library call (``os.environ[...]``): the
start-up error must name the line of the app's code that did it, not ``<frozen os>``."""

from tests.apps import nested_settings  # noqa: F401 - importing it is what fails

app = None
