"""The Flask app integration tests run under gunicorn (sync workers)."""

from __future__ import annotations

from flask import Flask

from scalewise import ScalewiseWSGIMiddleware
from scalewise.config import load_config

app = Flask(__name__)


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


app.wsgi_app = ScalewiseWSGIMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, options=load_config().metrics_options()
)
