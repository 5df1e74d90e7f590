"""The README's example app, copied out of the README and served by the real server.

A reader copies that block into a file and runs it; so does this test (the block that starts
with ``from server import App``), then asks every route it defines.  An example that names
something it never defines (it once called an undefined ``lookup``: a 500) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support import running_server

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [block] = [b for b in blocks if b.startswith("from server import App")]
    return block


def test_the_readme_example_app_serves_every_route_it_defines(tmp_path: Path) -> None:
    (tmp_path / "readme_app.py").write_text(readme_example())
    with running_server("readme_app:app", tmp_path=tmp_path,
                        env={"PYTHONPATH": f"{tmp_path}:{ROOT}"}) as server:
        status, _, body = server.get("/hello/world", {"X-User": "alice", "X-Request-ID": "r-1"})
        assert status == 200, body
        assert json.loads(body) == {"hello": "world", "by": "alice", "request": "r-1"}

        status, _, body = server.get("/fan-out", {"X-User": "bob", "X-Request-ID": "r-2"})
        assert status == 200, body
        assert json.loads(body) == {"results": [
            {"shard": i, "user": "bob", "request": "r-2"} for i in range(4)]}

        status, _, body = server.get("/hello/world")  # no X-User: the hook answers
        assert (status, json.loads(body)) == (401, {"error": "who are you?"})
        status, _, body = server.get("/nope", {"X-User": "alice"})
        assert (status, json.loads(body)) == (404, {"error": "not found"})
        assert "Traceback" not in server.log(), server.log()
