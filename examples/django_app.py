"""A one-file Django project measured by scalewise, over WSGI and over ASGI.

    python examples/django_app.py                              # wsgiref on 127.0.0.1:8000
    gunicorn -w 4 examples.django_app:application              # WSGI
    uvicorn --workers 4 examples.django_app:asgi_application   # ASGI

Either way ``/items/42/`` is labelled ``/items/<int:pk>/``. Settings are configured only if
nobody did before, because Django allows it once per process (tests import this module).
"""

from __future__ import annotations

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path

from scalewise import ScalewiseMiddleware, ScalewiseWSGIMiddleware

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="scalewise-example-not-a-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
    )


def item(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"id": pk})


urlpatterns = [path("items/<int:pk>/", item)]

application = ScalewiseWSGIMiddleware(get_wsgi_application())
asgi_application = ScalewiseMiddleware(get_asgi_application())

if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    make_server("127.0.0.1", 8000, application).serve_forever()
