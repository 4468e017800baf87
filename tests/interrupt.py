"""A stopped test run still cleans up: SIGTERM (what ``kill``, a CI timeout or a stopped job sends)
becomes KeyboardInterrupt, which pytest answers by tearing down every fixture set up so far
(``pytest_sessionfinish``) — hubs, proxies, SLURM, PostgreSQL, namespaces, accounts — instead of
dying with them still running. Loaded by ``tests/conftest.py``."""
from __future__ import annotations

import signal
import threading


def _stop(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}: tearing down what the tests started")


def pytest_configure(config):
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
