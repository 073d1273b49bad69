"""gunicorn's settings for the web process (the Procfile passes `--config python:config.gunicorn`).

Memory: the master loads Django and imports every view (`preload_app`, then the URLconf in
`pre_fork`), and freezes the garbage collector's view of those objects before it forks, so
the workers share those pages instead of each importing Django on its own. Measured with
`make footprint`: the web process (master and 2 workers) went from 144 to 96 MB proportional
set size. The price: `kill -HUP` reloads the configuration, not the code; restart the
process to deploy new code (the README's upgrade steps do).

Request metrics: every worker counts its requests in files under PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multiprocess mode), and /metrics adds them up, so a scrape counts every
worker's requests whichever worker answers it. The master empties that folder when it starts
(counts begin again at a restart, which Prometheus' rate() expects), makes a private one when
none is given, and drops a dead worker's live gauges.
"""

import gc
import os
import shutil
import tempfile

preload_app = True
_warmed = False


def _metrics_folder() -> str | None:
    """Empty PROMETHEUS_MULTIPROC_DIR, or make a private folder when none is given; returns the one made.

    At import, since gunicorn reads this file before it preloads the app, and prometheus-client
    chooses where to count when it is first imported."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="faultline-metrics-")
        return os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.unlink(os.path.join(folder, name))
    return None


_made_metrics_dir = _metrics_folder()


def pre_fork(server, worker) -> None:
    global _warmed
    if not _warmed:  # once: a worker forked again after a crash finds everything loaded
        from django.urls import get_resolver

        get_resolver().url_patterns  # imports every view module and what it uses
        _warmed = True
    gc.freeze()  # objects loaded so far are never scanned by the collector, so their pages stay shared


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _made_metrics_dir:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)
