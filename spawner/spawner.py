"""OpenNebulaSpawner: a user's server on a VM, an SSH host or the hub's machine.

start: provider gets a machine -> SSH (pinned host key, optional bastion) -> hub-API tunnel ->
bootstrap program starts jupyterhub-singleuser on the host's loopback -> server tunnel -> HTTP check.
Everything needed to find, check and clean the server is persisted as soon as it exists.
"""
from __future__ import annotations

import asyncio
import os
import pwd
import sys
import time
import uuid
from functools import cached_property

from jupyterhub.spawner import SpawnException, Spawner
from jupyterhub.utils import url_path_join, wait_for_http_server
from sqlalchemy import inspect as sa_inspect
from tornado import web
from traitlets import Float, Instance, List, Unicode, default, observe

import asyncssh

from opennebula import OpenNebulaError

from . import form
from .bootstrap import BootstrapFailed, BootstrapRunner, server_request
from .hostkeys import HUB_SCOPE, HostKeyStore, user_scope
from .keys import new_spawn_key
from .netguard import HostRefused
from .profiles import VmProfile, parse_profiles
from .providers import HostProvider, MachineStatus, ProviderError, SpawnContext, provider_class
from .secretbox import SecretBox, SecretBoxError
from .sshconn import HostKeyChanged, SshTarget, SshUnreachable, wait_for_ssh
from .state import JumpHost, ServerState
from .tunnels import HostSession, TunnelError

# What poll() may wait out for poll_grace: the cloud, the network or SSH not answering. Anything
# else is a bug: logged with its traceback, and never a reason to drop a server.
TRANSIENT_ERRORS = (OpenNebulaError, OSError, asyncio.TimeoutError, asyncssh.Error, SshUnreachable,
                    TunnelError, BootstrapFailed)

# Environment the server must not inherit from the hub when it runs on the hub's own machine.
LOCAL_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


class UserFacingSpawnError(SpawnException):
    """A SpawnException whose message the hub shows as it is (progress stream and spawn page)."""

    @property
    def jupyterhub_message(self) -> str:
        return self.message


def spawn_error(message: str, reason: str, status_code: int = 500) -> UserFacingSpawnError:
    return UserFacingSpawnError(message, reason=reason, status_code=status_code)


class OpenNebulaSpawner(Spawner):
    """Spawn single-user servers through a host provider (opennebula, ssh or local)."""

    provider = Unicode(
        "local",
        help="""Where servers run: ``opennebula`` (a VM per server), ``ssh`` (a fixed host or the
        user's own resource) or ``local`` (the hub's machine; demo only). Each provider has its
        own settings class: OpenNebulaProvider, SshProvider, LocalProvider.""",
    ).tag(config=True)

    profiles = List(
        help="""Server profiles offered on the spawn form, dicts with keys slug, name,
        description, cpu, vcpu, memory_mb, template_id, max_lifetime_hours, default_url.""",
    ).tag(config=True)

    jump_host = Unicode(
        "",
        help="ProxyJump bastion ``[user@]host[:port]`` for VMs and the fixed SSH host.",
    ).tag(config=True)

    jump_key_file = Unicode("", help="Private key the hub logs in to the bastion with.").tag(
        config=True
    )

    known_hosts_file = Unicode(
        "",
        help="""known_hosts file pinning host keys up front (bastion, fixed hosts). Hosts not in
        it are trusted on first contact, pinned in the server's state, then checked strictly.""",
    ).tag(config=True)

    bootstrap_python = Unicode(
        "python3", help="Python on the host that runs the bootstrap program (3.8+)."
    ).tag(config=True)

    python_env = Unicode(
        "",
        help="""Prepared Python environment on the host holding jupyterhub-singleuser (e.g.
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
        help="Per-server directories on the host (token file, log, pid).",
    ).tag(config=True)

    ssh_timeout = Float(
        120, help="Seconds a machine may take to accept the SSH login after it runs."
    ).tag(config=True)

    server_start_timeout = Float(
        60, help="Seconds jupyterhub-singleuser may take to listen once launched."
    ).tag(config=True)

    poll_grace = Float(
        180,
        help="""Seconds a running server survives transient cloud or SSH errors in poll() before
        the hub considers it gone.""",
    ).tag(config=True)

    crypt_key_file = Unicode(
        "nebulahub_crypt_key",
        help="""Key file (hub-private, created 0600 on first use) sealing the SSH private keys the
        hub stores (per-spawn keys in the server state, users' hub keys). Not used when
        $JUPYTERHUB_CRYPT_KEY is set: then the hub's crypt key seals them, as it seals auth_state.""",
    ).tag(config=True)

    host_key_dir = Unicode(
        "host-keys",
        help="""Hub-private folder of SSH host keys pinned across spawns: hub-wide for the admin's
        machines (fixed host, bastion), per user for users' own machines. A machine whose key
        changed is refused until the key is accepted deliberately (``nebulahub hostkeys
        forget``, or the spawn form's choice for a user's own machine).""",
    ).tag(config=True)

    host_provider = Instance(HostProvider, allow_none=True)

    @default("host_provider")
    def _default_provider(self):
        return provider_class(self.provider)(parent=self, log=self.log)

    @observe("provider")
    def _provider_changed(self, change):
        self.host_provider = provider_class(change.new)(parent=self, log=self.log)

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
        self._session: HostSession | None = None
        self._events: list[dict] = []
        self._new_event = asyncio.Event()
        self._starting = False
        self._unreachable_since: float | None = None

    @cached_property
    def secret_box(self) -> SecretBox:
        return SecretBox.from_environment(self.crypt_key_file)

    @cached_property
    def host_key_store(self) -> HostKeyStore:
        return HostKeyStore(self.host_key_dir)

    # ---- profiles and user options --------------------------------------------------------

    def profile_list(self) -> list[VmProfile]:
        return parse_profiles(self.profiles)

    async def apply_options(self, options: dict) -> None:
        """Validate user_options (form or REST API); errors name the field."""
        options = form.validate_options(options or {}, self)
        await form.check_user_hosts(options, self)
        profiles = {p.slug: p for p in self.profile_list()}
        self.profile = profiles[options["profile"]]
        self.user_options = options
        if self.profile.default_url:
            self.default_url = self.profile.default_url
        if not options.get("resource_host"):
            try:
                await self.host_provider.check_capacity(self, self.profile)
            except ProviderError as e:
                raise spawn_error(str(e), e.reason, status_code=403) from None

    # ---- state -----------------------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
        state.update(self.server_state.dump())
        return state

    def load_state(self, state):
        super().load_state(state)
        state = dict(state or {})
        clear_key = state.pop("private_key", "")
        if clear_key and not state.get("sealed_private_key"):
            # written in clear by an earlier release: sealed now, and never stored in clear again
            state["sealed_private_key"] = self.secret_box.seal(clear_key)
        self.server_state = ServerState(**{k: v for k, v in state.items()
                                           if k in ServerState.model_fields})

    def clear_state(self):
        super().clear_state()
        self.server_state = ServerState()

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
            st = self.server_state = ServerState(
                provider=self.provider, start_id=uuid.uuid4().hex[:12], profile=self.profile.slug,
                started_at=time.time(),
            )
            await self.persist_state()  # the start id first: a sweep never takes this VM for an orphan
            return await self._start(st)
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
            await asyncio.shield(self._cleanup())
            self._events = []  # the next spawn's progress starts empty
            raise error from None
        finally:
            self._starting = False
            self._new_event.set()

    async def _start(self, st: ServerState):
        provider = self.host_provider
        if provider.uses_spawn_key:
            private_key, public_key = new_spawn_key()
            st.sealed_private_key = self.secret_box.seal(private_key)
        else:
            public_key = ""
        ctx = SpawnContext(spawner=self, profile=self.profile, state=st, public_key=public_key,
                           options=self.user_options or {}, report=self.report,
                           persist=self.persist_state,
                           python=os.path.join(self._local_python(), "bin", "python"))
        await provider.acquire(ctx)
        if st.jump is None and self.jump_host and not st.own_resource:
            st.jump = JumpHost.parse(self.jump_host, st.username)
        st.workdir = self._workdir(st)
        await self.persist_state()

        if provider.remote:
            self.report(45, f"Waiting for SSH on {st.host}")
            await self._open_session(st, wait=True)
            self.report(50, "SSH reachable")
            hub_host, hub_port = self._hub_api_address()
            st.api_port = await self._session.forward_hub_api(hub_host, hub_port)
            await self.persist_state()

        self.report(60, "Bootstrapping your server")
        result = await self._run_bootstrap(st, self._start_request(st))
        st.server_port = int(result["port"])
        if provider.remote:
            st.local_port = await self._session.forward_to_server(st.server_port)
            port = st.local_port
        else:
            port = st.server_port
        await self.persist_state()

        self.report(90, "Waiting for your server to answer")
        await wait_for_http_server(
            f"http://127.0.0.1:{port}{url_path_join(self.server.base_url, 'api')}",
            timeout=self.http_timeout,
        )
        self.report(100, "Server answering")
        return ("127.0.0.1", port)

    def _workdir(self, st: ServerState) -> str:
        root = self.workdir_root.rstrip("/")
        if not self.host_provider.remote:  # the home is known here: store the real path
            home = self.host_provider.home_for(self.user.name)
            if root == "~" or root.startswith("~/"):
                root = home + root[1:]
            return os.path.join(os.path.abspath(root), st.start_id)
        return f"{root}/{st.start_id}"

    def _local_python(self) -> str:
        """The environment a server on the hub's own machine runs from."""
        return self.python_env or sys.prefix

    def _hub_api_address(self) -> tuple[str, int]:
        from urllib.parse import urlparse

        u = urlparse(self.hub.api_url)
        return (u.hostname or "127.0.0.1"), (u.port or 80)

    def _server_env(self, st: ServerState) -> dict:
        env = self.get_env()
        for secret in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
            env.pop(secret, None)  # the token travels in the request, into a 0600 file
        if self.host_provider.remote:
            api = f"http://127.0.0.1:{st.api_port}/hub/api"
            env["JUPYTERHUB_API_URL"] = api
            env["JUPYTERHUB_ACTIVITY_URL"] = url_path_join(
                api, "users", self.user.escaped_name, "activity")
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{{NEBULAHUB_PORT}}{self.server.base_url}"
        env["NEBULAHUB_PUBLIC_ORIGINS"] = " ".join(self._public_origins())
        return env

    def _public_origins(self) -> list[str]:
        """``host:port`` the browser reaches the hub at (JupyterHub.public_url, else the proxy's
        bind URL): the plotting app accepts websockets from these origins only. Bokeh compares an
        origin without a port as ``host:80``, hence that form for default ports."""
        from urllib.parse import urlparse

        proxy = (getattr(self.user, "settings", None) or {}).get("proxy")
        origins = []
        for url in (self.public_url, getattr(proxy, "public_url", "")):
            u = urlparse(url or "")
            if u.hostname and u.hostname not in ("0.0.0.0", "::"):
                origins.append(f"{u.hostname}:{u.port or 80}")
        return list(dict.fromkeys(origins))

    def _start_request(self, st: ServerState) -> dict:
        local = not self.host_provider.remote
        python_env = self._local_python() if local else self.python_env
        cwd = self.host_provider.home_for(self.user.name) if local else "~"
        return server_request(
            "start", st.workdir, token=self.api_token, env=self._server_env(st),
            python_env=python_env, create_env=self.create_env,
            packages=list(self.singleuser_packages), pip_args=list(self.pip_args),
            args=list(self.args), cwd=cwd, start_timeout=self.server_start_timeout,
        )

    async def _run_bootstrap(self, st: ServerState, request: dict) -> dict:
        def relay(event):
            self.report(70, event.get("message", "Bootstrapping"))

        runner = BootstrapRunner(on_event=relay)
        if self.host_provider.remote:
            return await runner.run_ssh(self._session.conn, self.bootstrap_python, request)
        return await runner.run_local(**self._local_process(st), request=request)

    def _local_process(self, st: ServerState) -> dict:
        """How the bootstrap runs on the hub's machine: the user's account, home and Python."""
        home = self.host_provider.home_for(self.user.name)
        env = {k: os.environ[k] for k in LOCAL_ENV_KEEP if k in os.environ}
        env["HOME"] = home  # the user's files, not the hub's
        python_env = self._local_python()
        python = os.path.join(python_env, "bin", "python")
        if not os.path.exists(python):
            python = sys.executable
        process = {"python": python, "env": env, "cwd": home if os.path.isdir(home) else "/"}
        if os.geteuid() == 0 and st.username:
            pw = pwd.getpwnam(st.username)
            if pw.pw_uid == 0:
                raise ProviderError("NebulaHub never runs a server as root.", reason="account")
            env.update(USER=pw.pw_name, LOGNAME=pw.pw_name, SHELL=pw.pw_shell or "/bin/sh")
            process.update(user=pw.pw_uid, group=pw.pw_gid)
        return process

    # ---- SSH session -------------------------------------------------------------------------

    def _target(self, st: ServerState) -> SshTarget:
        provider = self.host_provider
        # keys of machines that outlive the server are pinned across spawns; a VM's are not
        if st.own_resource:
            scope = user_scope(self.user.name)
        elif provider.machines_outlive_servers:
            scope = HUB_SCOPE
        else:
            scope = None
        jump = None
        if st.jump is not None:
            if st.own_resource:
                keys = provider.client_keys(self, st)
            elif self.jump_key_file:
                keys = [asyncssh.read_private_key(self.jump_key_file)]
            else:
                keys = []
            jump = SshTarget(st.jump.host, st.jump.username, st.jump.port, keys,
                             trust_scope=scope or HUB_SCOPE)
        return SshTarget(st.host, st.username, st.port, provider.client_keys(self, st), jump,
                         trust_scope=scope)

    async def _open_session(self, st: ServerState, *, wait: bool) -> HostSession:
        if self._session is not None and self._session.alive():
            return self._session
        if self._session is not None:
            await self._session.close()
        target = self._target(st)
        store = self.host_key_store
        if not st.host_keys and st.own_resource and \
                (self.user_options or {}).get("resource_trust_new_host_key"):
            # the user says their machine was reinstalled: its old key goes, the jump host's stays
            store.forget(target.trust_scope, target.key_id)
        for hop in target.hops():
            if hop.trust_scope and hop.key_id not in st.host_keys:
                known = store.load(hop.trust_scope).get(hop.key_id)
                if known:
                    st.host_keys[hop.key_id] = known
        # A new machine may take ssh_timeout to accept logins; a known one answers at once or not.
        conns = await wait_for_ssh(target, st.host_keys,
                                   deadline_seconds=self.ssh_timeout if wait else 10,
                                   known_hosts_file=self.known_hosts_file or None)
        for hop in target.hops():
            if hop.trust_scope and hop.key_id in st.host_keys:
                store.pin(hop.trust_scope, hop.key_id, st.host_keys[hop.key_id])
        self._session = HostSession(conns)
        await self.persist_state()  # newly pinned host keys
        return self._session

    async def _rebuild_tunnels(self, st: ServerState) -> None:
        """After a hub restart: same ports, so the stored URL and the server's API URL hold."""
        session = await self._open_session(st, wait=False)
        hub_host, hub_port = self._hub_api_address()
        await session.forward_hub_api(hub_host, hub_port, st.api_port)
        await session.forward_to_server(st.server_port, st.local_port)
        self.log.info("Rebuilt tunnels for %s", self._log_name)

    # ---- poll / stop -------------------------------------------------------------------------

    async def poll(self):
        st = self.server_state
        if self._starting:
            return None
        if not st.workdir or not st.server_port:
            return 0
        if self.profile_expired(st):
            self.log.info("%s reached its profile's maximum lifetime", self._log_name)
            return await self._gone()
        try:
            machine = await self.host_provider.check(st)
            if machine is MachineStatus.GONE:
                return await self._gone()
            if machine is MachineStatus.UNKNOWN:
                return await self._transient("the cloud did not answer")
            if self.host_provider.remote and (self._session is None or not self._session.alive()):
                await self._rebuild_tunnels(st)
            status = await self._run_bootstrap(st, server_request("status", st.workdir))
        except HostKeyChanged as e:
            self.log.error("%s: %s", self._log_name, e)
            return await self._gone()
        except TRANSIENT_ERRORS as e:  # cloud, SSH, network: transient until the grace runs out
            return await self._transient(f"{type(e).__name__}: {e}")
        except Exception:
            # A bug must not cost a user their server: report it, keep the server, and do not
            # count it as an outage.
            self.log.exception("Checking %s failed unexpectedly; it is kept running",
                               self._log_name)
            return None
        self._unreachable_since = None
        return None if status.get("running") else await self._gone()

    async def _gone(self) -> int:
        """The server cannot come back: release what is left, since the hub calls stop() only
        for servers poll() reports running."""
        await self._cleanup()
        return 0

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
        return await self._gone()

    async def stop(self, now=False):
        await self._cleanup()
        self.clear_state()
        self._events = []  # the next spawn's progress starts empty

    async def _cleanup(self) -> None:
        """Stop the server, close tunnels, give the machine back; from any partial state."""
        st = self.server_state
        remote = self.host_provider.remote
        # Only a host the hub has logged in to before can hold a server process to stop.
        reached = not remote or f"{st.host}:{st.port}" in st.host_keys
        if st.workdir and reached:
            try:
                if remote:
                    await asyncio.wait_for(self._open_session(st, wait=False), timeout=15)
                await asyncio.wait_for(
                    self._run_bootstrap(st, server_request("stop", st.workdir)), timeout=30)
            except Exception as e:  # the machine may be gone already; release follows anyway
                self.log.warning("Could not stop the server process of %s: %s",
                                 self._log_name, e)
        if self._session is not None:
            await self._session.close()
            self._session = None
        try:
            await self.host_provider.release(st)
        except Exception as e:
            # The VM keeps its hub tag: the orphan sweep terminates it later.
            self.log.error("Could not release the machine of %s: %s", self._log_name, e)

    # ---- errors ------------------------------------------------------------------------------

    def _spawn_error(self, e: Exception) -> SpawnException:
        if isinstance(e, SpawnException):
            return e
        if isinstance(e, ProviderError):
            return spawn_error(str(e), e.reason)
        if isinstance(e, HostRefused):
            return spawn_error(str(e), "options", status_code=400)
        if isinstance(e, HostKeyChanged):
            return spawn_error(f"{e} {self._host_key_advice(e.target)}", "host-key")
        if isinstance(e, SecretBoxError):
            return spawn_error(str(e), "crypt-key")
        if isinstance(e, SshUnreachable):
            return spawn_error(f"Your machine started but the hub could not log in to it. {e}", "ssh")
        if isinstance(e, BootstrapFailed):
            return spawn_error(f"Your server could not be set up on the machine: {e}", "bootstrap")
        if isinstance(e, TunnelError):
            return spawn_error(f"The hub could not connect to your server: {e}", "tunnel")
        if isinstance(e, web.HTTPError):
            return spawn_error(e.log_message or str(e), "http")
        return spawn_error(f"Your server could not start ({type(e).__name__}: {e}).", "internal")

    def _host_key_advice(self, target: SshTarget) -> str:
        if target.trust_scope == user_scope(self.user.name):
            return ("If you reinstalled that machine or changed its key yourself, start again "
                    "with \"Trust its new host key\" ticked on the spawn form.")
        if target.trust_scope == HUB_SCOPE:
            return ("Ask your admin: if the change is expected, they accept the new key with "
                    f"`nebulahub hostkeys forget {target.key_id}`.")
        return "Ask your admin."
