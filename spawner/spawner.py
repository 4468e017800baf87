"""OpenNebulaSpawner: JupyterHub's adapter over the machine layer.

start: the machine layer acquires a machine (an OpenNebula VM, an SSH host, the user's own machine
or the hub's) -> its host is reached (pinned host key, optional bastion) -> a tunnel to the hub API
-> the bootstrap program starts jupyterhub-singleuser on the machine's loopback -> a tunnel to the
server -> HTTP check. Everything needed to find, check and clean the server is persisted as soon as
it exists. What the spawner adds to the machine layer: profiles and the form, the server's own
state, progress, and JupyterHub's start/poll/stop contract.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from functools import cached_property
from urllib.parse import urlparse

from jupyterhub.spawner import SpawnException, Spawner
from jupyterhub.utils import url_path_join, wait_for_http_server
from sqlalchemy import inspect as sa_inspect
from tornado import web
from traitlets import Dict, Float, Integer, List, Unicode, default

from machines import (Machine, MachineAccess, MachineError, MachineRequest, MachineSize,
                      MachineStatus, OwnerKind, OwnMachine, is_transient, new_start_id,
                      provider_class)
from machines.bootstrap import server_request
from machines.errors import HostKeyChanged, OptionError
from machines.hostkeys import HUB_SCOPE, user_scope
from machines.releases import keep_retrying

from . import form
from .profiles import VmProfile, parse_profiles
from .state import ServerState


class UserFacingSpawnError(SpawnException):
    """A SpawnException whose message the hub shows as it is (progress stream and spawn page)."""

    @property
    def jupyterhub_message(self) -> str:
        return self.message


def spawn_error(message: str, reason: str, status_code: int = 500) -> UserFacingSpawnError:
    return UserFacingSpawnError(message, reason=reason, status_code=status_code)


class _Counted:
    """A semaphore's ``async with`` that counts who waits (for the progress message)."""

    def __init__(self, sem: asyncio.Semaphore, owner):
        self.sem, self.owner = sem, owner

    async def __aenter__(self):
        self.owner._waiting += 1
        try:
            await self.sem.acquire()
        finally:
            self.owner._waiting -= 1

    async def __aexit__(self, *exc):
        self.sem.release()


class OpenNebulaSpawner(Spawner):
    """Spawn single-user servers on machines from the machine layer (opennebula, ssh, local).

    The provider's own settings are in its class (OpenNebulaProvider, SshProvider,
    LocalProvider); how the hub reaches machines (bastion, pinned host keys, crypt key) is in
    MachineAccess. All of them show in ``jupyterhub --help-all``.
    """

    provider = Unicode(
        "local",
        help="""Where servers run: ``opennebula`` (a VM per server), ``ssh`` (a fixed host or the
        user's own machine) or ``local`` (the hub's machine, each user as their own Unix
        account). Each provider has its own settings class: OpenNebulaProvider, SshProvider,
        LocalProvider.""",
    ).tag(config=True)

    profiles = List(
        help="""Server profiles offered on the spawn form, dicts with keys slug, name,
        description, cpu, vcpu, memory_mb, template_id, max_lifetime_hours, default_url.""",
    ).tag(config=True)

    python_env = Unicode(
        "",
        help="""Prepared Python environment on the machine holding jupyterhub-singleuser (e.g.
        baked into the VM image). Empty or missing: the environment ``create_env`` is used. With
        the ``local`` provider: the environment users' servers run from, which every user's
        account must be able to read (default: the hub's own).""",
    ).tag(config=True)

    create_env = Unicode(
        "~/.nebulahub/env",
        help="Where the bootstrap creates an environment when no prepared one exists.",
    ).tag(config=True)

    singleuser_packages = List(
        ["jupyterhub==6.1.1", "jupyterlab>=4.4,<5"],
        help="Packages installed into a created environment.",
    ).tag(config=True)

    pip_args = List(
        [], help="Extra pip arguments for a created environment (e.g. an index or --find-links)."
    ).tag(config=True)

    workdir_root = Unicode(
        "~/.nebulahub/servers",
        help="Per-server folders on the machine (token file, log, pid); ~ is the account's home.",
    ).tag(config=True)

    server_start_timeout = Float(
        60, help="Seconds jupyterhub-singleuser may take to listen once launched."
    ).tag(config=True)

    concurrent_starts = Integer(
        8,
        help="""How many servers bootstrap at once in this hub; further spawns wait for a slot
        (and say so) instead of all starting together on shared machines and failing together.
        JupyterHub's own concurrent_spawn_limit still refuses beyond its limit.""",
    ).tag(config=True)

    poll_grace = Float(
        180,
        help="""Seconds a running server survives transient cloud or SSH errors in poll() before
        the hub considers it gone.""",
    ).tag(config=True)

    service_urls = Dict(
        {},
        help="""Hub services a user's server calls itself, as name -> URL on the hub's machine
        (``http://127.0.0.1:PORT/services/NAME/``; ``jobforms.service.managed_service`` gives the
        jobs service's). Each is tunnelled to the server's machine like the hub API (the machine
        needs no route to the hub) and given to the server as JSON in ``$NEBULAHUB_SERVICES``
        (name -> URL as the server reaches it); the server's API token is its credential.""",
    ).tag(config=True)

    @default("start_timeout")
    def _default_start_timeout(self):
        return 600

    @default("http_timeout")
    def _default_http_timeout(self):
        return 60

    @default("env_keep")
    def _default_env_keep(self):
        return ["LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]

    @default("options_form")
    def _default_options_form(self):
        return form.render_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return form.options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return lambda spawner, options: spawner.apply_options(options)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.server_state = ServerState()
        self.profile: VmProfile | None = None
        self._host = None
        self._events: list[dict] = []
        self._new_event = asyncio.Event()
        self._starting = False
        self._unreachable_since: float | None = None
        self._dead_host = False
        self._service_env: dict[str, str] = {}

    @cached_property
    def machine_access(self) -> MachineAccess:
        return MachineAccess(parent=self, log=self.log)

    @cached_property
    def machine_provider(self):
        provider = provider_class(self.provider)(parent=self, log=self.log,
                                                 access=self.machine_access)
        try:
            # releases that failed while the cloud was down are given back once it answers,
            # also those owed from before a hub restart
            asyncio.get_running_loop()
            keep_retrying(self.machine_access.pending_releases, provider.release,
                          self.machine_access.release_retry_interval)
        except RuntimeError:  # no event loop: a command-line use, not the hub
            pass
        return provider

    # ---- profiles and user options --------------------------------------------------------

    def profile_list(self) -> list[VmProfile]:
        return parse_profiles(self.profiles)

    def machine_request(self, options: dict, start_id: str = "") -> MachineRequest:
        """What this server asks the machine layer for."""
        profile = {p.slug: p for p in self.profile_list()}[options["profile"]]
        own = None
        if options.get("resource_host"):
            own = OwnMachine(host=options["resource_host"],
                             port=int(options.get("resource_port") or 22),
                             username=options.get("resource_user") or self.user.name,
                             jump=options.get("resource_jump", ""),
                             trust_new_host_key=bool(options.get("resource_trust_new_host_key")))
        return MachineRequest(
            user=self.user.name, owner_kind=OwnerKind.SERVER,
            owner_id=f"{self.user.name}/{self.name or ''}", start_id=start_id,
            size=MachineSize(cpu=profile.cpu, vcpu=profile.vcpu, memory_mb=profile.memory_mb,
                             template_id=profile.template_id, label=profile.name),
            own=own, python_env=self.python_env or sys.prefix)

    async def apply_options(self, options: dict) -> None:
        """Validate user_options (form or REST API); errors name the field."""
        options = form.validate_options(options or {}, self)
        request = self.machine_request(options)
        try:
            # an address the user typed is refused at once; a name needs a lookup, and the quota
            # a question to the cloud
            form.check_literal_addresses(options, self.machine_provider)
            await self.machine_provider.check_request(request)
        except OptionError as e:
            raise form.bad_field(e.field, e.detail) from None
        except MachineError as e:
            raise spawn_error(str(e), e.reason, status_code=403) from None
        self.profile = {p.slug: p for p in self.profile_list()}[options["profile"]]
        self.user_options = options
        if self.profile.default_url:
            self.default_url = self.profile.default_url

    # ---- state -----------------------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
        state.update(self.server_state.dump())
        return state

    def load_state(self, state):
        super().load_state(state)
        self.server_state = ServerState.load(state, self.machine_access.secret_box)
        if not self.server_state.machine.user and self.user is not None:
            self.server_state.machine.user = self.user.name

    def clear_state(self):
        super().clear_state()
        st = self.server_state
        self.server_state = ServerState(notice=st.notice, notice_log=st.notice_log)

    async def persist_state(self) -> None:
        """Write the state to the hub database now (the hub itself only saves after start)."""
        if self.orm_spawner is None:
            return
        self.orm_spawner.state = self.get_state()
        session = sa_inspect(self.orm_spawner).session
        if session is not None:
            session.commit()

    # ---- progress ----------------------------------------------------------------------------

    def report(self, progress: int, message: str) -> None:
        self.log.info("%s: %s%% %s", self._log_name, progress, message)
        self._events.append({"progress": progress, "message": message})
        self._new_event.set()

    async def progress(self):
        # The hub may ask for progress before start() runs (apply_user_options comes first):
        # keep the stream open for the whole pending spawn, not just while start() runs.
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not (self._starting or self._spawn_pending):
                break
            self._new_event.clear()
            try:
                await asyncio.wait_for(self._new_event.wait(), timeout=1)
            except asyncio.TimeoutError:
                pass

    # ---- start -------------------------------------------------------------------------------

    async def start(self):
        self._starting = True
        try:
            if self.profile is None:
                await self.apply_options(self.user_options or {})
            self.machine_provider  # noqa: B018  (starts the retries of owed releases)
            request = self.machine_request(self.user_options or {"profile": self.profile.slug},
                                           new_start_id())
            st = self.server_state = ServerState(
                machine=Machine(provider=self.provider, start_id=request.start_id,
                                user=self.user.name),
                profile=self.profile.slug, started_at=time.time())
            await self.persist_state()  # the start id first: a sweep never takes this VM for an orphan
            return await self._start(st, request)
        except asyncio.CancelledError:
            self.log.warning("Spawn of %s cancelled: cleaning up", self._log_name)
            await asyncio.shield(self._cleanup())
            self._events = []
            raise
        except Exception as e:
            error = self._spawn_error(e)
            if error.reason == "internal":  # a bug, not a user's problem: keep the traceback
                self.log.exception("Spawn of %s failed", self._log_name)
            else:
                self.log.error("Spawn of %s failed: %s", self._log_name, error.log_message)
            if getattr(e, "log", ""):
                self.log.error("The last lines of the server log of %s:\n%s", self._log_name,
                               e.log)
            await asyncio.shield(self._cleanup())
            self._remember(error.message, getattr(e, "log", ""))
            self._events = []  # the next spawn's progress starts empty
            raise error from None
        finally:
            self._starting = False
            self._new_event.set()

    async def _start(self, st: ServerState, request: MachineRequest):
        machine, provider = st.machine, self.machine_provider
        await provider.acquire(request, machine, self.report, self.persist_state)
        st.workdir = self._workdir(machine)
        await self.persist_state()

        host = self._host = provider.host_for(
            machine, trust_new_key=bool(request.own and request.own.trust_new_host_key))
        await host.open(wait=self.machine_access.ssh_timeout, report=self.report)
        await self.persist_state()  # host keys pinned at first contact
        api_host, st.api_port = await host.forward_to_hub(*self._hub_api_address())
        await self._forward_services(host, st)
        await self.persist_state()

        async with self._start_slot():
            self.report(60, "Bootstrapping your server")
            result = await host.bootstrap(self._start_request(st, api_host), self._relay)
        st.server_port = int(result["port"])
        st.local_port = await host.forward_to_machine(st.server_port)
        await self.persist_state()

        self.report(90, "Waiting for your server to answer")
        await wait_for_http_server(
            f"http://127.0.0.1:{st.local_port}{url_path_join(self.server.base_url, 'api')}",
            timeout=self.http_timeout,
        )
        self.report(100, "Server answering")
        return ("127.0.0.1", st.local_port)

    _slots: asyncio.Semaphore | None = None
    _waiting = 0

    def _start_slot(self) -> asyncio.Semaphore:
        """The hub-wide admission of server starts (``concurrent_starts``)."""
        cls = type(self)
        if cls._slots is None:
            cls._slots = asyncio.Semaphore(self.concurrent_starts)
        if cls._slots.locked():
            self.report(55, f"Waiting for a free start slot ({cls._waiting + 1} waiting, "
                            f"{self.concurrent_starts} starting)")
        return _Counted(cls._slots, cls)

    def _relay(self, event: dict) -> None:
        self.report(70, event.get("message", "Bootstrapping"))

    def _workdir(self, machine: Machine) -> str:
        """The server's folder; ``~`` is the account's home, written out where it is known."""
        root = self.workdir_root.rstrip("/")
        if machine.home and (root == "~" or root.startswith("~/")):
            root = machine.home + root[1:]
        return f"{root}/{self.server_state.machine.start_id}"

    def _hub_api_address(self) -> tuple[str, int]:
        u = urlparse(self.hub.api_url)
        return (u.hostname or "127.0.0.1"), (u.port or 80)

    def _server_env(self, st: ServerState, api_host: str) -> dict:
        env = self.get_env()
        for secret in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
            env.pop(secret, None)  # the token travels in the request, into a 0600 file
        api = f"http://{api_host}:{st.api_port}{urlparse(self.hub.api_url).path}"
        env["JUPYTERHUB_API_URL"] = api.rstrip("/")
        env["JUPYTERHUB_ACTIVITY_URL"] = url_path_join(
            api, "users", self.user.escaped_name, "activity")
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{{NEBULAHUB_PORT}}{self.server.base_url}"
        env["NEBULAHUB_PUBLIC_ORIGINS"] = " ".join(self._public_origins())
        if self._service_env:
            env["NEBULAHUB_SERVICES"] = json.dumps(self._service_env, sort_keys=True)
        return env

    def _public_origins(self) -> list[str]:
        """``host:port`` the browser reaches the hub at (JupyterHub.public_url, else the proxy's
        bind URL): the plotting app accepts websockets from these origins only. Bokeh compares an
        origin without a port as ``host:80``, hence that form for default ports."""
        proxy = (getattr(self.user, "settings", None) or {}).get("proxy")
        origins = []
        for url in (self.public_url, getattr(proxy, "public_url", "")):
            u = urlparse(url or "")
            if u.hostname and u.hostname not in ("0.0.0.0", "::"):
                origins.append(f"{u.hostname}:{u.port or 80}")
        return list(dict.fromkeys(origins))

    def _start_request(self, st: ServerState, api_host: str) -> dict:
        return server_request(
            "start", st.workdir, token=self.api_token, env=self._server_env(st, api_host),
            python_env=self.python_env or st.machine.python_env, create_env=self.create_env,
            packages=list(self.singleuser_packages), pip_args=list(self.pip_args),
            args=list(self.args), cwd=st.machine.home or "~",
            start_timeout=self.server_start_timeout,
        )

    # ---- reaching a running server -------------------------------------------------------------

    async def _reach(self, st: ServerState):
        """The host with both tunnels, rebuilt on the stored ports after a hub restart (so the
        URL the hub stored and the server's API URL hold)."""
        if self._host is not None and self._host.alive():
            return self._host
        if self._host is not None:
            await self._host.close()
        host = self._host = self.machine_provider.host_for(st.machine)
        await host.open(wait=self.machine_access.reconnect_timeout)
        await self.persist_state()
        if st.api_port:
            await host.forward_to_hub(*self._hub_api_address(), remote_port=st.api_port)
        if st.server_port:
            await host.forward_to_machine(st.server_port, st.local_port)
        await self._forward_services(host, st)
        return host

    async def _forward_services(self, host, st: ServerState) -> None:
        """Tunnel each of ``service_urls`` to the machine (on the stored port after a restart)
        and keep the URL the server reaches it at."""
        for name, url in self.service_urls.items():
            u = urlparse(url)
            there, port = await host.forward_to_hub(
                u.hostname or "127.0.0.1", u.port or 80,
                remote_port=st.service_ports.get(name, 0))
            st.service_ports[name] = port
            self._service_env[name] = f"http://{there}:{port}{u.path or '/'}"

    # ---- poll / stop -------------------------------------------------------------------------

    async def poll(self):
        """Liveness comes from the server, not from the cloud's API: a server whose machine
        answers over SSH and whose port is open is running however long the cloud is down; a
        server the hub cannot reach while its machine runs is gone at once (the proxy could
        only answer 503); only when neither answers is the outage waited out (``poll_grace``)."""
        st = self.server_state
        if self._starting:
            return None
        if not st.machine.exists and not st.workdir:
            return 0  # nothing here, or given back already
        if not st.server_port:
            # a start that did not finish in this process: the hub stopped in the middle of it
            return await self._gone("Your previous start was interrupted when the hub "
                                    "restarted; its machine was given back. Please start again.")
        if self.profile_expired(st):
            self.log.info("%s reached its profile's maximum lifetime", self._log_name)
            return await self._gone("Your server reached its profile's maximum lifetime.")
        machine = await self._machine_status(st)
        if machine is MachineStatus.GONE:
            return await self._gone("Your server's machine is gone (terminated or failed).")
        try:
            host = await self._reach(st)
            # cheap: a connection to the server's port over the standing SSH connection
            running = await asyncio.wait_for(host.port_open(st.server_port),
                                             self.machine_access.reconnect_timeout)
        except HostKeyChanged as e:
            self.log.error("%s: %s", self._log_name, e)
            return await self._gone(str(e))
        except Exception as e:
            if not is_transient(e):
                # A bug must not cost a user their server: report it, keep the server, and do
                # not count it as an outage.
                self.log.exception("Checking %s failed unexpectedly; it is kept running",
                                   self._log_name)
                return None
            if machine is MachineStatus.RUNNING:
                self.log.error("%s cannot be reached although its machine runs (%s): gone",
                               self._log_name, e)
                self._dead_host = True  # clean-up gives the machine back without calling it
                return await self._gone("The hub lost its connection to your server's "
                                        "machine; please start again.")
            if machine is MachineStatus.PAUSED:
                return self._paused()
            return await self._transient(f"{type(e).__name__}: {e}")
        self._unreachable_since = None
        if running:
            if machine is MachineStatus.UNKNOWN:
                self.log.warning("%s: the cloud did not answer; its server answers, so it is "
                                 "kept running", self._log_name)
            return None
        if machine is MachineStatus.PAUSED:
            return self._paused()
        return await self._gone("Your server stopped on its machine.")

    def _paused(self) -> None:
        """The machine is powered off, suspended or failed in a way an admin can undo: it is not
        given back behind anybody's back; the user (or the culler) can stop the server."""
        self.log.warning("%s: its machine is paused by the cloud (powered off, suspended or "
                         "recoverable); the server is kept", self._log_name)
        return None

    async def _machine_status(self, st: ServerState) -> MachineStatus:
        """What the provider knows; UNKNOWN when it does not answer (never a reason to drop)."""
        try:
            return await self.machine_provider.check(st.machine)
        except Exception as e:
            if not is_transient(e):
                self.log.exception("Asking about the machine of %s failed", self._log_name)
            return MachineStatus.UNKNOWN

    async def _gone(self, why: str = "") -> int:
        """The server cannot come back: release what is left (once), since the hub calls stop()
        only for servers poll() reports running; say why on the next spawn page."""
        await self._cleanup()
        if why:
            self._remember(why)
        return 0

    def _remember(self, notice: str, log: str = "") -> None:
        self.server_state.notice, self.server_state.notice_log = notice, log

    def profile_expired(self, st: ServerState) -> bool:
        try:
            prof = {p.slug: p for p in self.profile_list()}.get(st.profile)
        except ValueError:
            return False
        if not prof or not prof.max_lifetime_hours or not st.started_at:
            return False
        return time.time() - st.started_at > prof.max_lifetime_hours * 3600

    async def _transient(self, why: str):
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        waited = now - self._unreachable_since
        if waited < self.poll_grace:
            self.log.warning("%s unreachable for %.0fs (%s); still counted as running",
                             self._log_name, waited, why)
            return None
        self.log.error("%s unreachable for %.0fs (%s): considered gone", self._log_name, waited,
                       why)
        return await self._gone("Neither the cloud nor your server's machine answered for "
                                f"{waited:.0f} s; please start again.")

    async def stop(self, now=False):
        await self._cleanup()
        self.clear_state()
        self._events = []  # the next spawn's progress starts empty

    async def _cleanup(self) -> None:
        """Stop the server, close tunnels, give the machine back; from any partial state, once
        (the record is emptied afterwards). A release the cloud cannot take now is owed and
        retried until it succeeds, across hub restarts."""
        st = self.server_state
        provider = self.machine_provider
        if not st.machine.exists and not st.workdir:
            return
        if st.workdir and st.machine.exists:
            try:
                host = self._host or provider.host_for(st.machine)
                self._host = host
                # only a machine the hub has logged in to before can hold a server to stop,
                # and one found dead just now is not asked again
                if host.reached_before() and not self._dead_host:
                    wait = self.machine_access.reconnect_timeout
                    await asyncio.wait_for(host.open(wait=wait), timeout=wait + 1)
                    await asyncio.wait_for(
                        host.bootstrap(server_request("stop", st.workdir)), timeout=30)
            except Exception as e:  # the machine may be gone already; release follows anyway
                self.log.warning("Could not stop the server process of %s: %s",
                                 self._log_name, e)
        if self._host is not None:
            await self._host.close()
            self._host = None
        machine = st.machine
        try:
            await provider.release(machine)
        except Exception as e:
            if is_transient(e):
                self.machine_access.pending_releases.add(machine)
                self.log.warning("Could not give back the machine of %s now (%s); it is retried "
                                 "until the cloud takes it", self._log_name, e)
            else:
                self.log.error("Could not release the machine of %s: %s", self._log_name, e)
        self.server_state = ServerState(notice=st.notice, notice_log=st.notice_log)
        self._dead_host = False
        self._service_env: dict[str, str] = {}
        await self.persist_state()

    # ---- errors ------------------------------------------------------------------------------

    def _spawn_error(self, e: Exception) -> SpawnException:
        if isinstance(e, SpawnException):
            return e
        if isinstance(e, OptionError):
            return spawn_error(str(e), e.reason, status_code=400)
        if isinstance(e, HostKeyChanged):
            return spawn_error(f"{e} {self._host_key_advice(e.target)}", e.reason)
        if isinstance(e, MachineError):
            prefix = {"ssh": "Your machine started but the hub could not log in to it. ",
                      "bootstrap": "Your server could not be set up on the machine: ",
                      "tunnel": "The hub could not connect to your server: "}.get(e.reason, "")
            hint = self.machine_provider.login_hint
            suffix = f" {hint}" if e.reason == "ssh" and hint and "refused" in str(e) else ""
            return spawn_error(f"{prefix}{e}{suffix}", e.reason)
        if isinstance(e, web.HTTPError):
            return spawn_error(e.log_message or str(e), "http")
        return spawn_error(f"Your server could not start ({type(e).__name__}: {e}).", "internal")

    def _host_key_advice(self, target) -> str:
        scope = getattr(target, "trust_scope", None)
        if scope == user_scope(self.user.name):
            return ("If you reinstalled that machine or changed its key yourself, start again "
                    "with \"Trust its new host key\" ticked on the spawn form.")
        if scope == HUB_SCOPE:
            return ("Ask your admin: if the change is expected, they accept the new key with "
                    f"`nebulahub hostkeys forget {target.key_id}`.")
        return "Ask your admin."
