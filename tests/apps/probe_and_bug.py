"""The reference app plus a view with a real bug that propagates to the server.

The error probe's deliberate failures are logged quietly; a real error on the same path
through the server must stay a full traceback.
"""

from server.probe import create_app


class RealBug(Exception):
    """Stands for an application bug."""


app = create_app()
app.propagate_exceptions += (RealBug,)


@app.route("/bug")
def bug() -> str:
    raise RealBug("a real bug")
