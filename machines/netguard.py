"""Where users' own SSH machines may be: never the hub itself or the cloud's metadata service.

A user names their own machine on the spawn form; the hub then connects to it. Without a check a
user could make the hub probe its own loopback, its internal services or the metadata endpoint
of the cloud it runs in. The name is resolved once, every address it resolves to is checked, and
the hub connects to the checked address (no second lookup an attacker's DNS could answer
differently).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket

from .errors import HostRefused

# Refused whatever the admin allows: the hub's own machine and addresses that are never a user's
# SSH server (loopback, "this host", link-local with the cloud metadata services, multicast).
ALWAYS_DENIED = [ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128", "169.254.0.0/16", "fe80::/10",
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32", "fd00:ec2::254/128", "100.100.100.200/32",
)]


def hub_addresses() -> set:
    """Every address of this machine's network interfaces."""
    import psutil

    found = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(a.address.split("%")[0]))
                except ValueError:
                    continue
    return found


def _networks(cidrs, setting: str) -> list:
    nets = []
    for c in cidrs or []:
        try:
            nets.append(ipaddress.ip_network(str(c).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{setting}: {c!r} is not a network like 10.0.0.0/8") from None
    return nets


def check_address(addr, *, field: str, host: str, allow=(), deny=(), own=None) -> None:
    """Raise :class:`HostRefused` unless ``addr`` may be a user's machine."""
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    shown = host if host == str(ip) else f"{host} ({ip})"
    own = hub_addresses() if own is None else own
    if ip in own:
        raise HostRefused(field, f"{shown} is the hub's own machine, not yours.")
    for net in ALWAYS_DENIED:
        if ip.version == net.version and ip in net:
            kind = ("a loopback address" if ip.is_loopback else
                    "a link-local or cloud-metadata address" if ip.is_link_local else
                    "not a machine's address")
            raise HostRefused(field, f"{shown} is {kind}; name the SSH machine you want to use.")
    for net in _networks(deny, "SshProvider.user_host_deny"):
        if ip.version == net.version and ip in net:
            raise HostRefused(field, f"{shown} is in a network this hub does not serve on.")
    allowed = _networks(allow, "SshProvider.user_host_allow")
    if allowed and not any(ip.version == n.version and ip in n for n in allowed):
        raise HostRefused(field, f"{shown} is outside the networks this hub serves on "
                          f"({', '.join(str(n) for n in allowed)}).")


async def resolve_user_host(host: str, port: int, *, field: str, allow=(), deny=()) -> str:
    """The checked address to connect to for a user-named ``host`` (every resolved address must
    pass; the first is used)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=10)
    except (socket.gaierror, asyncio.TimeoutError, UnicodeError):
        raise HostRefused(field, f"the name {host!r} does not resolve to an address.") from None
    addrs = list(dict.fromkeys(info[4][0] for info in infos))
    if not addrs:
        raise HostRefused(field, f"the name {host!r} does not resolve to an address.")
    own = hub_addresses()
    for a in addrs:
        check_address(a, field=field, host=host, allow=allow, deny=deny, own=own)
    return addrs[0]
