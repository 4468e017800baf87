"""``nebulahub`` command line: demo, reconcile, accounts, hostkeys, volumes, server-env,
sample-data."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .config import load_config, machine_provider


def cmd_reconcile(args) -> int:
    from functools import partial

    from machines import OwnerKind
    from machines.reconcile import reconcile, sweep_forever, volumes_without_user
    from spawner.reconcile import hub_references, hub_users

    provider = machine_provider("opennebula", load_config(args.config))
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        print("nebulahub reconcile: set JUPYTERHUB_API_TOKEN (a hub token with scopes "
              "list:users, read:users, admin:server_state)", file=sys.stderr)
        return 2
    api_url = os.environ.get("JUPYTERHUB_API_URL", args.hub_api_url)

    # the hub is the source of truth for servers; job workers and Dask workers are left to
    # their own services' sweeps
    sources = {OwnerKind.SERVER.value: partial(hub_references, api_url, token)}

    async def once():
        orphans = await reconcile(provider.client, provider.hub_id, sources,
                                  dry_run=args.dry_run)
        verb = "would terminate" if args.dry_run else "terminated"
        print(f"{len(orphans)} orphan VM(s) {verb}: {', '.join(str(v.id) for v in orphans) or '-'}")
        lost = await volumes_without_user(provider.client, provider.hub_id,
                                          await hub_users(api_url, token))
        print(f"{len(lost)} home volume(s) of users the hub no longer knows (kept; delete with "
              f"`nebulahub volumes delete USER`): "
              + (", ".join(f"{v.id} ({v.tags.get('NEBULAHUB_USER', '?')})" for v in lost) or "-"))
        return 0

    if args.every:
        asyncio.run(sweep_forever(provider.client, provider.hub_id, sources, args.every))
        return 0
    return asyncio.run(once())


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.config)


def cmd_accounts(args) -> int:
    """The Unix accounts the hub created for the local provider: list, or remove exactly those."""
    from machines.localusers import created_accounts, remove_created

    registry = os.path.abspath(machine_provider("local", load_config(args.config))
                               .accounts_registry)
    if args.action == "list":
        for name in created_accounts(registry):
            print(name)
        return 0
    removed = remove_created(registry)
    print(f"removed {len(removed)} account(s) this hub created: {', '.join(removed) or '-'}")
    return 0


def cmd_hostkeys(args) -> int:
    """SSH host keys pinned across spawns: list them, or forget one to accept a new key."""
    from machines import MachineAccess
    from machines.hostkeys import HUB_SCOPE, user_scope

    store = MachineAccess(config=load_config(args.config)).host_keys
    if args.action == "list":
        for scope, keys in store.scopes().items():
            for key_id, line in sorted(keys.items()):
                print(f"{scope}\t{key_id}\t{line}")
        return 0
    if not args.host:
        print("nebulahub hostkeys forget: name the machine as host:port", file=sys.stderr)
        return 2
    key_id = args.host if ":" in args.host else f"{args.host}:22"
    scope = user_scope(args.user) if args.user else HUB_SCOPE
    if store.forget(scope, key_id):
        print(f"forgot the key of {key_id} ({scope}); the next connection records its new key")
        return 0
    print(f"no key pinned for {key_id} ({scope})", file=sys.stderr)
    return 1


def cmd_volumes(args) -> int:
    """Users' home volumes (OpenNebula images tagged with this hub): list, resize, delete."""
    from machines.providers.homes import TAG_RESIZE
    from opennebula import TAG_SERVER, TAG_USER

    provider = machine_provider("opennebula", load_config(args.config))
    client = provider.client

    async def run() -> int:
        volumes = await client.list_volumes(provider.hub_id)
        if args.action == "list":
            print("image\tuser\tserver\tsize MB\tstate\tattached to VMs")
            for v in sorted(volumes, key=lambda v: (v.tags.get(TAG_USER, ""), v.id)):
                if args.user and v.tags.get(TAG_USER) != args.user:
                    continue
                print(f"{v.id}\t{v.tags.get(TAG_USER, '?')}\t{v.tags.get(TAG_SERVER) or '-'}\t"
                      f"{v.size_mb:g}\t{v.state_name}\t"
                      f"{','.join(map(str, v.vm_ids)) or '-'}")
            return 0
        if not args.user:
            print(f"nebulahub volumes {args.action}: name the user", file=sys.stderr)
            return 2
        found = [v for v in volumes if v.tags.get(TAG_USER) == args.user
                 and (v.tags.get(TAG_SERVER) or "") == args.server]
        if not found:
            print(f"no volume for {args.user}/{args.server}", file=sys.stderr)
            return 1
        volume = found[0]
        if args.action == "resize":
            if not args.size or args.size <= volume.size_mb:
                print(f"give --size larger than the current {volume.size_mb:g} MB",
                      file=sys.stderr)
                return 2
            if volume.vm_ids:  # attached: grow it now
                vm = volume.vm_ids[0]
                info = await client.vm_info(vm)
                await client.resize_disk(vm, info.disk_ids.get(volume.id, 1), args.size)
                print(f"volume {volume.id} resized to {args.size} MB on VM {vm}")
            else:  # grown when it is attached next
                await client.tag_image(volume.id, {TAG_RESIZE: str(args.size)})
                print(f"volume {volume.id} will be {args.size} MB when next attached")
            return 0
        if volume.in_use:
            print(f"volume {volume.id} is attached to a VM ({volume.state_name}); stop the "
                  "user's server first", file=sys.stderr)
            return 1
        if not args.yes:
            answer = input(f"Delete volume {volume.id} of {args.user} with all their files? "
                           "Type the user's name to confirm: ")
            if answer.strip() != args.user:
                print("not deleted")
                return 1
        await client.delete_image(volume.id)
        print(f"volume {volume.id} of {args.user} deleted")
        return 0

    try:
        return asyncio.run(run())
    finally:
        client.shutdown()


def cmd_server_env(args) -> int:
    from machines.serverenv import ensure_server_env

    print(ensure_server_env(args.path))
    return 0


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
    rec.add_argument("--hub-api-url", default="http://127.0.0.1:8081/hub/api")
    demo = sub.add_parser("demo", help="start the hub with the embedded default (no cloud)")
    demo.add_argument("--config", default=None, help="config file (default: the project's)")
    acc = sub.add_parser("accounts", help="Unix accounts the hub created (local provider)")
    acc.add_argument("action", choices=["list", "remove"])
    keys = sub.add_parser("hostkeys", help="SSH host keys pinned across spawns")
    keys.add_argument("action", choices=["list", "forget"])
    keys.add_argument("host", nargs="?", help="host:port whose key to forget")
    keys.add_argument("--user", help="the hub user whose own machine it is (default: admin's)")
    vol = sub.add_parser("volumes", help="users' home volumes on OpenNebula")
    vol.add_argument("action", choices=["list", "resize", "delete"])
    vol.add_argument("user", nargs="?", help="the hub user")
    vol.add_argument("--server", default="", help="a named server's volume (default: the "
                                                  "default server's)")
    vol.add_argument("--size", type=int, help="resize: the new size in MB")
    vol.add_argument("--yes", action="store_true", help="delete without asking")
    env = sub.add_parser("server-env", help="build the environment local servers run from")
    env.add_argument("path", nargs="?", default="/var/lib/nebulahub/server-env")
    for p in (rec, acc, keys, vol):
        p.add_argument("--config", default="jupyterhub_config.py", help="the hub's config file")
    sub.add_parser("sample-data", help="write demo data files (see --help)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "sample-data":
        return cmd_sample_data(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return {"reconcile": cmd_reconcile, "demo": cmd_demo, "accounts": cmd_accounts,
            "hostkeys": cmd_hostkeys, "volumes": cmd_volumes,
            "server-env": cmd_server_env}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
