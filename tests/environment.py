"""Loaded before Django (pytest's `-p tests.environment` in pyproject.toml): the suite's own settings.

The suite runs with DEBUG off, as production does, over plain HTTP (Django's test client and the
live server speak HTTP), with a key of its own. The worker and relay processes the tests start
inherit these. Tests of the production profile itself run `manage.py` with an environment of their own.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-suite-only-" + "kx7Qm2Vb9Tz4Lp8Wn3Rc6Yh1Jd5Gf0As" * 2)
os.environ.setdefault("PLAIN_HTTP", "1")
