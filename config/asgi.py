"""ASGI entry point, for the long-lived connections (live event streams) only.

Pages are served over WSGI (gunicorn): measured here, Django's ASGI path serves a
small page at about a quarter of the WSGI rate. The process says it is alive with a
"live" heartbeat (config/heartbeat.py), which /healthz reports.
"""

import atexit
import logging
import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()


def _beat_forever() -> None:
    from django.conf import settings

    from config.heartbeat import beat

    while True:
        try:
            beat("live")
        except Exception:  # Redis is down or restarting: try again on the next beat
            logging.getLogger("faultline").warning("could not write the live heartbeat", exc_info=True)
        threading.Event().wait(settings.HEARTBEAT_INTERVAL)


def _clear() -> None:
    from config.heartbeat import clear

    try:
        clear("live")  # a clean stop removes itself at once, as the other processes do
    except Exception:
        pass


threading.Thread(target=_beat_forever, name="live-heartbeat", daemon=True).start()
atexit.register(_clear)
