"""Where the scheduler listens and the address workers are given, checked before anything starts.

The most common failure of batch-started Dask workers is a scheduler address the worker machines
cannot reach (the wrong interface, a private address, a firewall). What can be checked here is
checked at start with a sentence naming the setting: the interface exists and has an IPv4
address, the host is an address of this machine, a fixed port is free, the contact address is
``host:port``. What can only be seen from the workers' side (a route, a firewall) is reported by
the watch (:mod:`dask_clusters.watch`) when a job runs and its worker never arrives.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from .config import DaskClusters
from .errors import ConfigProblem


@dataclass(frozen=True)
class SchedulerAddress:
    """Where the scheduler listens (``host``, ``port``), what workers are told
    (``contact``: ``host:port`` or empty), and where the dashboard listens."""

    host: str
    port: int
    contact: str
    dashboard_port: int
    protocol: str

    def scheduler_options(self) -> dict:
        options = {"host": self.host, "port": self.port, "protocol": self.protocol,
                   "dashboard_address": f"127.0.0.1:{self.dashboard_port}"}
        if self.contact:
            options["contact_address"] = f"{self.protocol}{self.contact}"
        return options


def scheduler_address(settings: DaskClusters, *, local: bool) -> SchedulerAddress:
    """The checked address; ``local``: workers are processes of this machine (loopback)."""
    protocol = "tls://" if settings.tls else "tcp://"
    if local:
        host = "127.0.0.1"
    elif settings.scheduler_interface:
        host = _interface_address(settings.scheduler_interface)
    elif settings.scheduler_host:
        host = settings.scheduler_host.strip()
        _bind(host, 0, f"DaskClusters.scheduler_host = {host!r}",
              "It must be an address of this machine (the user's server) that the worker "
              "machines can reach.")
    else:
        from distributed.utils import get_ip

        host = get_ip()
    port = settings.scheduler_port
    if port:
        _bind(host, port, f"DaskClusters.scheduler_port = {port}",
              "Another program uses that port; choose another or 0 for a free one.")
    if settings.dashboard_port:
        _bind("127.0.0.1", settings.dashboard_port,
              f"DaskClusters.dashboard_port = {settings.dashboard_port}",
              "Another program uses that port; choose another or 0 for a free one.")
    contact = settings.scheduler_contact_address.strip()
    if contact and not local:
        name, _, number = contact.rpartition(":")
        if not name or not number.isdigit() or not 0 < int(number) < 65536:
            raise ConfigProblem(f"DaskClusters.scheduler_contact_address = {contact!r} must be "
                                "'host:port', e.g. 'login1.example.org:8786'.")
    return SchedulerAddress(host, port, contact if not local else "", settings.dashboard_port,
                            protocol)


def _interface_address(name: str) -> str:
    import psutil

    interfaces = psutil.net_if_addrs()
    if name not in interfaces:
        raise ConfigProblem(f"The network interface {name!r} (DaskClusters.scheduler_interface) "
                            "does not exist on this machine; it has: "
                            f"{', '.join(sorted(interfaces))}.")
    ipv4 = [a.address for a in interfaces[name] if a.family == socket.AF_INET]
    if not ipv4:
        raise ConfigProblem(f"The network interface {name!r} (DaskClusters.scheduler_interface) "
                            "has no IPv4 address, so workers cannot connect to it.")
    return ipv4[0]


def _bind(host: str, port: int, setting: str, advice: str) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigProblem(f"{setting}: the name cannot be resolved ({e.strerror}). "
                            f"{advice}") from None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError as e:
            raise ConfigProblem(f"The scheduler cannot listen there ({setting}): "
                                f"{e.strerror}. {advice}") from None
