"""What a page says when Redis is down.

Breakers, faults, heartbeats and the event feed live in Redis; the lessons, the practice
questions and every notification row live in the database. A lab page that needs Redis while
it is unreachable answers 503 with a sentence, not a traceback (the API has its own JSON
handler in labs/api.py); the rest of the site keeps working.
"""

import logging

from django.shortcuts import render
from redis.exceptions import RedisError

log = logging.getLogger("faultline")


class RedisDownMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, RedisError):
            return None
        log.warning("Redis is unreachable (%s: %s) while serving %s", type(exception).__name__, exception, request.path)
        template = "redis_down_fragment.html" if getattr(request, "htmx", False) else "redis_down.html"
        response = render(request, template, {"error": type(exception).__name__}, status=503)
        response["Retry-After"] = "5"
        return response
