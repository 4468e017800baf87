"""Adaptive scaling that does not submit and cancel jobs in a loop.

distributed's ``Adaptive`` retires workers after ``wait_count`` agreeing decisions, and the
first it retires are jobs that have not arrived yet: with a batch queue of minutes, a burst of
work submits jobs, the burst ends (or is served by the workers already there) before they start,
they are cancelled, the next burst submits them again. :class:`CooledAdaptive` adds a cool-down:
for ``cooldown`` seconds after any scale-up nothing is retired, so a job that was submitted gets
the time to start and be used.
"""
from __future__ import annotations

import time

from distributed.deploy.adaptive import Adaptive


class CooledAdaptive(Adaptive):
    """``Adaptive`` with ``cooldown`` seconds of no scale-down after a scale-up."""

    def __init__(self, *args, cooldown: float = 60.0, **kwargs):
        self.cooldown = float(cooldown)
        self.last_scale_up = float("-inf")
        super().__init__(*args, **kwargs)

    async def scale_up(self, n: int) -> None:
        self.last_scale_up = time.monotonic()
        await super().scale_up(n)

    async def recommendations(self, target: int) -> dict:
        found = await super().recommendations(target)
        if found["status"] == "down" and time.monotonic() - self.last_scale_up < self.cooldown:
            self.close_counts.clear()  # agreement starts again once the cool-down is over
            return {"status": "same"}
        return found
