"""What a job may ask for to run on: a backend, VMs or nodes, cores, memory and wall time.

Three parties set the limits. The app's descriptor says which backends suit it and a range with a
default for each resource (``resources:`` in ``app.yaml``); the site's admin says what each backend
offers at most, given to :func:`jobforms.loader.load_apps` as a plain dict,
``{"slurm": {"cores": 2, "memory_mb": 4000, "walltime_s": 3600, "nodes": 1}, ...}``; and the user
picks within both. :func:`offers` intersects the first two once, when apps are loaded: a backend
whose limits leave nothing of the app's range is not offered for that app (and says why).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

RESOURCES = ("nodes", "cores", "memory_mb", "walltime_s")
LABELS = {"nodes": ("VMs / nodes", ""), "cores": ("Cores per VM / node", ""),
          "memory_mb": ("Memory per VM / node", "MB"), "walltime_s": ("Wall time", "s")}
AMOUNTS = {"nodes": "VMs / nodes", "cores": "cores", "memory_mb": "MB of memory", "walltime_s": "seconds of wall time"}
BACKEND_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"


class ResourceRange(BaseModel):
    """The range an app accepts for one resource, and its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Optional[StrictInt] = Field(None, ge=1, description="Value the form starts with (default: min).")
    min: StrictInt = Field(1, ge=1)
    max: Optional[StrictInt] = Field(None, ge=1, description="Largest value (the backend's limit may be lower).")


class ResourcesSpec(BaseModel):
    """``resources:`` in ``app.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backends: Optional[list[str]] = Field(
        None, description="Backends this app may run on, preferred first (default: every backend the site offers).")
    nodes: ResourceRange = ResourceRange(default=1, max=1)
    cores: ResourceRange = ResourceRange(default=1)
    memory_mb: ResourceRange = ResourceRange(default=1024, min=64)
    walltime_s: ResourceRange = ResourceRange(default=3600, min=60)

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for ranges that contradict themselves."""
        found = []
        for name in RESOURCES:
            r = getattr(self, name)
            if r.max is not None and r.max < r.min:
                found.append((f"{name}.max", f"max ({r.max}) is smaller than min ({r.min})."))
            elif r.default is not None and not (r.min <= r.default <= (r.max or r.default)):
                found.append((f"{name}.default", f"The default {r.default} is outside {r.min}..{r.max}."))
        for i, backend in enumerate(self.backends or []):
            if not re.match(BACKEND_PATTERN, backend):
                found.append((f"backends[{i}]", f"'{backend}' is not a backend name (lower-case letters, "
                                                f"digits, '-' and '_')."))
        if self.backends is not None and len(set(self.backends)) != len(self.backends):
            found.append(("backends", "A backend is listed twice."))
        return found


class BackendLimits(BaseModel):
    """What one backend offers a job at most (None: it sets no limit on that resource)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: Optional[StrictInt] = Field(None, ge=1)
    cores: Optional[StrictInt] = Field(None, ge=1)
    memory_mb: Optional[StrictInt] = Field(None, ge=1)
    walltime_s: Optional[StrictInt] = Field(None, ge=1)


def parse_limits(limits: Mapping) -> dict[str, BackendLimits]:
    """The admin's limits as models; :class:`ValueError` naming the backend and key if malformed."""
    if not isinstance(limits, Mapping):
        raise ValueError("Backend limits must map backend names to their limits.")
    parsed = {}
    for backend, values in limits.items():
        if not isinstance(backend, str) or not re.match(BACKEND_PATTERN, backend):
            raise ValueError(f"Backend limits: {backend!r} is not a backend name.")
        try:
            parsed[backend] = BackendLimits.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"Backend limits of '{backend}'{': ' + where if where else ''}: {first['msg']}.") from None
    return parsed


@dataclass(frozen=True)
class Bounds:
    """A resource's range on one backend for one app, and the value the form starts with."""

    min: int
    max: Optional[int]
    default: int


@dataclass(frozen=True)
class BackendOffer:
    """One backend an app can run on here, with each resource's bounds."""

    backend: str
    bounds: Mapping[str, Bounds]


def offers(spec: ResourcesSpec, limits: Mapping[str, BackendLimits]) -> tuple[list[BackendOffer], list[str]]:
    """The backends (app's order, else the site's) this app can use, and why the others cannot."""
    wanted = spec.backends if spec.backends is not None else list(limits)
    found, reasons = [], []
    for backend in wanted:
        if backend not in limits:
            reasons.append(f"'{backend}' is not offered on this site")
            continue
        bounds, why = {}, None
        for name in RESOURCES:
            r, cap = getattr(spec, name), getattr(limits[backend], name)
            high = cap if r.max is None else (r.max if cap is None else min(r.max, cap))
            if high is not None and high < r.min:
                why = f"'{backend}' offers at most {high} {AMOUNTS[name]}, the app needs at least {r.min}"
                break
            start = r.default if r.default is not None else r.min
            bounds[name] = Bounds(r.min, high, start if high is None else min(start, high))
        if why:
            reasons.append(why)
        else:
            found.append(BackendOffer(backend, bounds))
    return found, reasons


class ResourceRequest(BaseModel):
    """The resources of one submitted job, checked against its backend's bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str
    nodes: int
    cores: int
    memory_mb: int
    walltime_s: int
