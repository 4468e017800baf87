"""One follower of the jobs service's event stream per page process, shared by every open tab.

All tabs of the Jobs page in one server belong to the server's owner, so one server-sent event
stream serves them all (as a reflector does for many watchers): each tab subscribes and gets a
queue of :class:`JobChanged` and :class:`Reconnected` items. A broken stream is opened again
after a growing pause; a tab told :class:`Reconnected` reads its job list again, since changes
may have been missed while the stream was down (and between its first list and the stream).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Optional

from .client import JobsClient, ServiceUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobChanged:
    """A job of the user changed; ``job`` is the service's JSON of it."""

    job: dict


@dataclass(frozen=True)
class Reconnected:
    """The stream is open (again): read the whole list, a change may have been missed."""


@dataclass(frozen=True)
class StreamDown:
    """The stream broke; ``sentence`` says why. Live updates pause until :class:`Reconnected`."""

    sentence: str


class JobFeed:
    """The shared follower; :meth:`subscribe` starts it, the last :meth:`unsubscribe` stops it."""

    def __init__(self, client: JobsClient, *, first_pause: float = 1.0, longest_pause: float = 30.0):
        self.client = client
        self.first_pause, self.longest_pause = first_pause, longest_pause
        self._queues: set[asyncio.Queue] = set()
        self._task: Optional[asyncio.Task] = None

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=2000)
        self._queues.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._follow())
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._queues.discard(queue)
        if not self._queues and self._task is not None:
            self._task.cancel()
            self._task = None

    def _publish(self, item) -> None:
        for queue in list(self._queues):
            if queue.full():  # a tab that stopped reading: it reads the whole list instead
                while not queue.empty():
                    queue.get_nowait()
                item_for_it = Reconnected()
            else:
                item_for_it = item
            queue.put_nowait(item_for_it)

    async def _follow(self) -> None:
        pause = self.first_pause
        while self._queues:
            opened = False
            try:
                async for job in self.client.events():
                    if job is None:  # the stream is open
                        opened, pause = True, self.first_pause
                        self._publish(Reconnected())
                    else:
                        self._publish(JobChanged(job))
                why = "The jobs service closed the live updates."
            except ServiceUnavailable as e:
                why = str(e)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug must not end live updates for good
                log.exception("Following the jobs service's events failed")
                why = f"Live updates stopped ({type(e).__name__})."
            if opened or pause == self.first_pause:
                self._publish(StreamDown(why))
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.longest_pause)
