"""``nebulahub`` command line: demo, reconcile, sample-data."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path


def _load_config(path: str):
    from traitlets.config.loader import PyFileConfigLoader

    p = Path(path).resolve()
    return PyFileConfigLoader(p.name, str(p.parent)).load_config()


def cmd_reconcile(args) -> int:
    from .providers.opennebula import OpenNebulaProvider
    from .reconcile import hub_references, reconcile, sweep_forever

    provider = OpenNebulaProvider(config=_load_config(args.config))
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        print("nebulahub reconcile: set JUPYTERHUB_API_TOKEN (a hub token with scopes "
              "list:users, read:users, admin:server_state)", file=sys.stderr)
        return 2
    api_url = os.environ.get("JUPYTERHUB_API_URL", args.hub_api_url)

    async def once():
        refs = await hub_references(api_url, token)
        orphans = await reconcile(provider.client, provider.hub_id, refs, dry_run=args.dry_run)
        verb = "would terminate" if args.dry_run else "terminated"
        print(f"{len(orphans)} orphan VM(s) {verb}: {', '.join(str(v.id) for v in orphans) or '-'}")
        return 0

    if args.every:
        asyncio.run(sweep_forever(provider.client, provider.hub_id, api_url, token, args.every))
        return 0
    return asyncio.run(once())


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.config)


def cmd_sample_data(args, rest: list[str]) -> int:
    from panel_apps.sample_data import main as sample_main

    return sample_main(rest)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="nebulahub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconcile", help="terminate VMs of this hub that no server references")
    rec.add_argument("--dry-run", action="store_true", help="only list the orphans")
    rec.add_argument("--every", type=float, default=0, help="repeat every N seconds")
    rec.add_argument("--config", default="jupyterhub_config.py", help="the hub's config file")
    rec.add_argument("--hub-api-url", default="http://127.0.0.1:8081/hub/api")
    demo = sub.add_parser("demo", help="start the hub with the embedded default (no cloud)")
    demo.add_argument("--config", default=None, help="config file (default: the project's)")
    sub.add_parser("sample-data", help="write demo data files (see --help)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "sample-data":
        return cmd_sample_data(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return {"reconcile": cmd_reconcile, "demo": cmd_demo}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
