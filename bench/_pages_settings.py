"""Settings for bench/pages.py only: the site's own, with a URLconf that adds the trivial view every page is compared with."""

from config.settings import *  # noqa: F403 - the site exactly as it runs, one setting changed

ROOT_URLCONF = "bench._pages_urls"
