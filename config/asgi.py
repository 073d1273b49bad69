"""ASGI entry point, for the long-lived connections only: the live event streams, and lab 9's
simulated services, whose slow answers are held open at no cost (labs/services.py).

Pages are served over WSGI (gunicorn): measured here, Django's ASGI path serves a
small page at about a quarter of the WSGI rate. So this process answers only /live/. The process says it is alive with a
"live" heartbeat (config/heartbeat.py), which /healthz reports.
"""

import atexit
import logging
import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()
NOT_HERE = b"Not found: this process serves the live event streams (/live/) only.\n"


async def application(scope, receive, send):
    """The event streams and nothing else: a request for a page (a proxy sending it the wrong
    path) gets 404 at once, not a page rendered on the slow path. Reversing URLs still knows
    every page, since the streams' event rows link to them."""
    if scope["type"] == "http" and not scope["path"].startswith("/live/"):
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": NOT_HERE})
        return
    await django_application(scope, receive, send)


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
