"""Signals the labs send for other apps to act on, so labs never imports them."""

from django.dispatch import Signal

# Sent by the relay about once a second while it holds the publishing lease: time-based
# housekeeping that must happen on the server even when no browser is open (a workshop's
# broadcast fault ending after its duration) connects here. Receivers must be quick and
# safe to run in several relays at once (claim before acting).
relay_tick = Signal()
