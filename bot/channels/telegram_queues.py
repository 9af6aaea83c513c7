"""Per-chat queues: one chat's updates in order, different chats concurrently (bounded)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class ChatQueues:
    """Run jobs one after another per key, different keys concurrently (bounded)."""

    def __init__(self, max_concurrent: int) -> None:
        self._queues: dict[object, deque[Callable[[], Awaitable[None]]]] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, key: object, job: Callable[[], Awaitable[None]]) -> None:
        """Queue a job behind the key's earlier jobs."""
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        self._idle.clear()
        task = asyncio.create_task(self._worker(key), name=f"chat-queue-{hash(key) & 0xFFFF}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, key: object, job: Callable[[], Awaitable[None]]) -> None:
        """Queue a job and wait until it ran."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def wrapped() -> None:
            try:
                await job()
            except BaseException as exc:
                if not done.done():
                    done.set_exception(exc)
                raise
            else:
                if not done.done():
                    done.set_result(None)

        self.submit(key, wrapped)
        await done

    async def _worker(self, key: object) -> None:
        queue = self._queues[key]
        try:
            async with self._slots:
                while queue:
                    job = queue.popleft()
                    try:
                        await job()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("update handling failed")
        finally:
            del self._queues[key]
            if not self._queues:
                self._idle.set()

    async def drain(self, grace: float) -> bool:
        """Wait until every queue is empty; False when `grace` seconds passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            return False
        return True

    async def cancel(self) -> None:
        """Stop the workers (their updates stay unhandled in the journal)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
