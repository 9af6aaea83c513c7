"""Group commit: the work of concurrent handlers shares one COMMIT (one fsync), run in a
helper thread so the event loop goes on meanwhile."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlite_utils

from bot.storage import savepoint as rollback_point

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a group commit collects work before its COMMIT (seconds): 0 is "after the other
# handlers that are ready now"; bookkeeping nobody waits for may wait up to LAZY_WINDOW.
GROUP_WINDOW = 0.0
LAZY_WINDOW = 0.05


class GroupCommit:
    """Commit the work of several concurrent handlers with one fsync (group commit).

    With synchronous=FULL every COMMIT waits for the disk; one per update would cap the bot
    at a few hundred updates per second. Handlers run their (synchronous) work inside one
    shared transaction, each in its own savepoint, and wait until the COMMIT that follows
    on the next turn of the event loop; only then do they send anything. A failing piece of
    work rolls back its own savepoint only.

    The COMMIT (the fsync) runs in a helper thread (SQLite releases the GIL there), so the
    event loop goes on meanwhile: replies already committed go out, updates are parsed.
    Work arriving during a COMMIT joins the next group; every other transaction on the
    database waits for it (storage.transaction settles it first).
    """

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self._open = False
        self._due = 0.0
        self._waiters: list[asyncio.Future[None]] = []
        # The COMMIT running in the helper thread (with the waiters of its group), and the
        # bookkeeping that arrived meanwhile, for the next group.
        self._inflight: tuple[concurrent.futures.Future[bool], list[asyncio.Future[None]]] | None
        self._inflight = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._later: list[tuple[Callable[[], Any], bool]] = []
        self._later_window = LAZY_WINDOW
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    def _begin(self, window: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + window
        if self._open:
            if due < self._due:
                # Someone waits for this commit: bring it forward.
                self._due = due
                loop.call_later(window, self._on_timer)
            return
        if self.db.conn.in_transaction:
            # No transaction spans an await, so this is an implicit one that sqlite3 opened
            # for a bare statement and nobody will commit: this group commits it too.
            log.warning("joining a transaction left open outside a transaction() block")
        else:
            self.db.execute("BEGIN IMMEDIATE")
        self._open = True
        self._due = due
        # Everything that arrives before the timer shares the COMMIT, so a busy bot syncs
        # far less often than once per update.
        loop.call_later(window, self._on_timer)

    def _do(self, work: Callable[[], T], savepoint: bool) -> T:
        if not savepoint:
            return work()
        with rollback_point(self.db):
            return work()

    def add(
        self, work: Callable[[], object], *, savepoint: bool = True, window: float = LAZY_WINDOW
    ) -> None:
        """Run `work` in the shared transaction; it commits within about `window` seconds.

        Use it for bookkeeping nobody waits for (a crash before the COMMIT only repeats
        a little work). During a COMMIT the work runs at the start of the next group (an
        error then is logged). With `savepoint` (the default) a failing `work` rolls back
        its own writes only; a single statement needs none.
        """
        if self._inflight is not None:
            self._later.append((work, savepoint))
            self._later_window = min(self._later_window, window)
            return
        self._begin(window)
        self._do(work, savepoint)

    async def run(self, work: Callable[[], T], *, savepoint: bool = True) -> T:
        """Run `work` in the shared transaction and wait until it is on disk."""
        while self._inflight is not None:
            # The connection is committing the previous group: join the next one.
            await self._idle.wait()
        self._begin(GROUP_WINDOW)
        result = self._do(work, savepoint)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        await future
        return result

    def _on_timer(self) -> None:
        if not self._open or self._inflight is not None:
            return
        if asyncio.get_running_loop().time() < self._due - 0.001:
            return  # an earlier timer of a group that was brought forward and committed
        if not hasattr(self.db, "commit_started"):
            # A database that cannot tell its transactions to wait: commit here.
            self.flush()
            return
        waiters, self._waiters = self._waiters, []
        self._open = False
        self._due = 0.0
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "group-commit")
        commit = self._thread.submit(self._commit)
        self.db.commit_started(commit)
        self._inflight = (commit, waiters)
        self._idle.clear()
        asyncio.wrap_future(commit).add_done_callback(lambda _: self._committed(commit))

    def _commit(self) -> bool:
        """COMMIT (in the helper thread, or here); False when it failed and was rolled back."""
        try:
            self.db.execute("COMMIT")
        except Exception as exc:
            log.error("group commit failed: %s", type(exc).__name__)
            try:
                if self.db.conn.in_transaction:
                    self.db.execute("ROLLBACK")
            except Exception as again:
                log.error("rollback after a failed commit failed: %s", type(again).__name__)
            return False
        return True

    def _committed(self, commit: concurrent.futures.Future[bool]) -> None:
        """The helper thread's COMMIT ended: tell its waiters, then start the next group."""
        if self._inflight is None or self._inflight[0] is not commit:
            return  # flush() settled it already
        ok = not commit.cancelled() and commit.exception() is None and commit.result()
        waiters = self._inflight[1]
        self._inflight = None
        self._idle.set()
        _resolve(waiters, ok)
        later, self._later = self._later, []
        window, self._later_window = self._later_window, LAZY_WINDOW
        for work, savepoint in later:
            self._begin(window)
            try:
                self._do(work, savepoint)
            except Exception as exc:
                log.error("bookkeeping for the next commit failed: %s", type(exc).__name__)

    def settle(self) -> bool:
        """Wait for a COMMIT running in the helper thread (its waiters are told, the work
        that arrived meanwhile starts the next group); whether that COMMIT succeeded."""
        if self._inflight is None:
            return True
        commit = self._inflight[0]
        concurrent.futures.wait([commit])
        ok = commit.exception() is None and bool(commit.result())
        self._committed(commit)
        return ok

    def flush(self) -> bool:
        """COMMIT what is open, here and now (before anything that must see the data on
        disk), after a COMMIT running in the helper thread. False when this COMMIT failed
        (everything since the one before is rolled back)."""
        self.settle()
        if not self._open:
            return True
        self._due = 0.0
        waiters, self._waiters = self._waiters, []
        self._open = False
        committed = self._commit()
        _resolve(waiters, committed)
        return committed

    def close(self) -> None:
        """Commit what is left and stop the helper thread."""
        self.flush()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None


def _resolve(waiters: Sequence[asyncio.Future[None]], ok: bool) -> None:
    for future in waiters:
        if future.done():
            continue
        if ok:
            future.set_result(None)
        else:
            future.set_exception(RuntimeError("the transaction could not be committed"))
