"""SQLite with a queue in front of its one writer.

SQLite lets one connection write at a time. A second writer is put to sleep by
SQLite's busy handler, which retries after 1, 2, 5, 10, ... and then 100 ms at a
time: with several busy writers (web, relay, workers) the lock often comes free
while everyone waiting is still asleep. Measured with the campaign bench on 2 cores,
the workers spent over half their time in that sleep.

So every write transaction here first takes an exclusive lock on a file beside the
database (flock), polling every millisecond, and SQLite itself never sees two of
our writers at once. The busy timeout still applies: a writer that waits longer
gets SQLite's own "database is locked" error. Writes outside a transaction (a bare
UPDATE in autocommit) skip the queue and fall back on SQLite's busy handler, which
keeps them correct, only less prompt.
"""

import fcntl
import os
import time

from django.db.backends.sqlite3 import base

POLL_SECONDS = 0.001


class DatabaseWrapper(base.DatabaseWrapper):
    _writer_file = None  # (pid, file object): a forked child opens its own, or it would share the parent's lock
    _writing = False

    def _start_transaction_under_autocommit(self):
        self._take_writer_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer_lock()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_writer_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_writer_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_writer_lock()

    def _lock_file(self):
        if self.is_in_memory_db():
            return None
        if self._writer_file is None or self._writer_file[0] != os.getpid():
            self._writer_file = (os.getpid(), open(f"{self.settings_dict['NAME']}-writer.lock", "a"))  # noqa: SIM115
        return self._writer_file[1]

    def _take_writer_lock(self):
        lock_file = self._lock_file()
        if lock_file is None:
            return
        deadline = time.monotonic() + self.settings_dict["OPTIONS"].get("timeout", 5)
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._writing = True
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise self.Database.OperationalError("database is locked (waited for the writer queue)") from None
                time.sleep(POLL_SECONDS)

    def _release_writer_lock(self):
        if self._writing:
            self._writing = False
            fcntl.flock(self._writer_file[1], fcntl.LOCK_UN)
