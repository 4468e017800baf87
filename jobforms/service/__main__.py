"""``python -m jobforms.service --config jupyterhub_config.py``: the jobs service, as a
JupyterHub-managed service (the hub gives it its URL, prefix and API token in the environment).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuth
from tornado import web

from .api import routes
from .config import JobsService
from .engine import JobEngine


def load_config(path: str):
    from pathlib import Path

    from traitlets.config.loader import PyFileConfigLoader

    p = Path(path).resolve()
    return PyFileConfigLoader(p.name, str(p.parent)).load_config()


async def serve(cfg) -> None:
    engine = JobEngine(JobsService(config=cfg))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/nebulahub-jobs/")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8082"))
    app = web.Application(
        routes(prefix), engine=engine, cookie_secret=secrets.token_bytes(32),
        hub_auth=HubOAuth(api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""),
                          cache_max_age=60, oauth_client_id=os.environ.get(
                              "JUPYTERHUB_CLIENT_ID", "service-nebulahub-jobs")))
    app.listen(url.port or 8082, address=url.hostname or "127.0.0.1")
    engine.start()
    logging.getLogger("nebulahub.jobs").info("Jobs service at %s%s with apps %s",
                                             url.geturl(), prefix, ", ".join(engine.apps))
    try:
        await asyncio.Event().wait()
    finally:
        await engine.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobforms.service")
    parser.add_argument("--config", required=True, help="the hub's config file (JobsService.*)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(load_config(args.config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
