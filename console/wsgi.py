"""The WSGI entry point gunicorn serves."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

from console.middleware import ChunkedBodyLimit  # noqa: E402  (needs the settings module set)

application = ChunkedBodyLimit(get_wsgi_application())
