"""ASGI entry point, for the long-lived connections (live event streams) only.

Pages are served over WSGI (gunicorn): measured here, Django's ASGI path serves a
small page at about a quarter of the WSGI rate.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()
