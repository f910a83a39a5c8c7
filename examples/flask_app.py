"""A Flask app measured by scalewise: ``python examples/flask_app.py``, then open :5000/metrics.

Two lines do it (the import and the wrap at the bottom). Wrapping ``app.wsgi_app`` rather
than ``app`` keeps ``app.run()``, ``app.test_client()`` and ``flask run`` measured too; the
middleware gets a bound method and asks the Flask app it is bound to for route templates, so
``/items/42`` is labelled ``/items/<int:item_id>``. Under gunicorn:
``gunicorn -w 4 examples.flask_app:app``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response

from scalewise import ScalewiseWSGIMiddleware

app = Flask(__name__)


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("boom: counted as a 500 and an exception")


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[str]:
        for n in range(3):
            time.sleep(0.005)  # time to first byte < total time
            yield f"chunk {n}\n"

    return Response(chunks(), mimetype="text/plain")


app.wsgi_app = ScalewiseWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
