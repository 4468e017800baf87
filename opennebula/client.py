"""The async façade over pyone's blocking XML-RPC client.

pyone blocks on the network, so every call runs in a thread pool the client owns, under a
timeout, and the JupyterHub event loop never waits on OpenNebula.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping

import pyone
import requests
from pyone.server_xrpc import RequestsTransport

from . import parsing
from .errors import (CloudUnavailableError, NotFoundError, OpenNebulaError, VmBusyError,
                     public_endpoint, translate)
from .images import ImagesMixin
from .models import TAG_HUB_ID, Quota, VmInfo
from .states import VmPhase
from .templates import as_xml_document, check_context, check_tags, sizing

log = logging.getLogger(__name__)

_ALL_VISIBLE = -2      # vmpool filter: every VM the user may see
_MINE = -3             # vmpool filter: the user's own VMs
_NOT_DONE = -1         # vmpool state filter: any state except DONE


class _TimedTransport(RequestsTransport):
    """pyone's requests-based transport with a per-request timeout.

    pyone's own ``timeout`` argument sets the process-wide socket default, which would change
    every socket in the hub; this bounds only our requests.
    """

    def __init__(self, timeout: float, https: bool, verify: bool | str):
        super().__init__()
        self.timeout = timeout
        self.set_https(https)
        self.set_https_verify(verify)

    def request(self, host, handler, request_body, verbose=False):
        url = self._build_url(host, handler)
        resp = requests.post(url, data=request_body, headers=self.headers,
                             verify=self.https_verify, timeout=self.timeout)
        try:
            resp.raise_for_status()
        except requests.RequestException as exc:
            # Only the status goes on: requests' text would repeat the URL.
            raise xmlrpc.client.ProtocolError(public_endpoint(url), resp.status_code,
                                              resp.reason or "", {}) from exc
        return self.parse_response(resp)


class OpenNebulaClient(ImagesMixin):
    """Async access to one OpenNebula endpoint with one user's session.

    ``endpoint`` is the XML-RPC URL (``http(s)://HOST:2633/RPC2``); ``session`` is
    ``"user:password"`` (or ``"user:token"``). The session is never logged and never appears in
    ``repr``, ``str`` or any exception text. Every call is bounded by ``timeout`` seconds and runs
    in a pool of ``max_workers`` threads; :meth:`close` releases the pool.
    """

    def __init__(self, endpoint: str, session: str, *, timeout: float = 30.0,
                 max_workers: int = 4, https_verify: bool | str = True):
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ValueError("the OpenNebula endpoint must be an http:// or https:// URL, "
                             "e.g. http://opennebula.example.org:2633/RPC2")
        if not isinstance(session, str) or ":" not in session or session.startswith(":"):
            raise ValueError("the OpenNebula session must look like 'user:password'")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.endpoint = endpoint
        self.user = session.split(":", 1)[0]
        self.timeout = timeout
        self._secrets = (session, session.split(":", 1)[1])
        # protocol pinned: pyone would otherwise obey ONEAPI_PROTOCOL from the environment.
        self._server = pyone.OneServer(endpoint, session=session, protocol="xmlrpc")
        # pyone builds its transport itself; swap in ours for the timeout (see _TimedTransport).
        self._server._ServerProxy__transport = _TimedTransport(
            timeout, endpoint.startswith("https"), https_verify)
        self._pool = ThreadPoolExecutor(max_workers=max_workers,
                                        thread_name_prefix="opennebula")
        self._closed = False

    @classmethod
    def from_files(cls, endpoint: str, auth_file: str | os.PathLike, **kwargs: Any
                   ) -> "OpenNebulaClient":
        """A client whose session is read from a file holding ``user:password``
        (the format of ``~/.one/one_auth``); surrounding whitespace is ignored."""
        with open(auth_file, encoding="utf-8") as fh:
            session = fh.read().strip()
        if ":" not in session or session.startswith(":"):
            raise ValueError(f"the OpenNebula auth file {os.fspath(auth_file)} must contain "
                             "one line 'user:password'")
        return cls(endpoint, session, **kwargs)

    def __repr__(self) -> str:
        return f"OpenNebulaClient(endpoint={public_endpoint(self.endpoint)!r}, user={self.user!r})"

    __str__ = __repr__

    # ------------------------------------------------------------------ plumbing

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any,
                    object_kind: str | None = None, object_id: int | None = None) -> Any:
        if self._closed:
            raise OpenNebulaError("the OpenNebula client is closed")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._pool, functools.partial(fn, *args)), self.timeout)
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            raise CloudUnavailableError(
                f"OpenNebula at {public_endpoint(self.endpoint)} did not answer within "
                f"{self.timeout:g} s while trying to {what}") from None
        except Exception as exc:  # noqa: BLE001 - every failure is translated
            err = translate(exc, endpoint=self.endpoint, what=what, secrets=self._secrets,
                            object_kind=object_kind, object_id=object_id)
            log.debug("OpenNebula call failed: %s", err)
            # "from None": the original exception's text could carry request details.
            raise err from None

    # ------------------------------------------------------------------ VMs

    async def instantiate(self, *, name: str, template_id: int | None = None,
                          template: Mapping[str, Any] | None = None,
                          cpu: float | None = None, vcpu: int | None = None,
                          memory_mb: int | None = None,
                          context: Mapping[str, str] | None = None,
                          tags: Mapping[str, str] | None = None,
                          disks: list[Mapping[str, str]] | None = None) -> int:
        """Create a VM and return its id.

        Give either ``template_id`` (an OpenNebula VM template, instantiated with
        ``one.template.instantiate``) or ``template`` (an inline template dict such as
        ``{"CPU": 1, "MEMORY": 512, "DISK": {"IMAGE_ID": 0}, "NIC": {"NETWORK_ID": 0}}``,
        created with ``one.vm.allocate``). ``cpu``/``vcpu``/``memory_mb`` override the size.

        ``context`` goes into the VM's CONTEXT (e.g. ``SSH_PUBLIC_KEY``, ``NETWORK="YES"``),
        merged over the template's own CONTEXT — OpenNebula would otherwise replace the whole
        CONTEXT. No secrets: names like ``*PASSWORD*``/``*TOKEN*`` (except ``TOKEN="YES"``),
        private keys and API tokens are refused with ValueError.

        ``tags`` become USER_TEMPLATE attributes in the same request, so the VM is never
        untagged, not even for a moment.

        ``disks`` (e.g. a persistent home volume ``{"IMAGE_ID": "7", "TARGET": "vdb"}``) are
        added after the template's own DISKs: oned's template merge replaces a vector attribute
        of the template by the extra template's, so the template's disks are sent again.
        """
        if not name:
            raise ValueError("a VM needs a name")
        if (template_id is None) == (template is None):
            raise ValueError("give exactly one of template_id or template")
        extra: dict[str, Any] = sizing(cpu, vcpu, memory_mb)
        context = check_context(context or {})
        extra.update(check_tags(tags or {}))

        if template_id is not None:
            if context or disks:
                base = await self._call(f"read VM template {template_id}",
                                        self._server.template.info, int(template_id),
                                        object_kind="VM template", object_id=int(template_id))
                own_template = base.TEMPLATE or {}
            if context:
                own = own_template.get("CONTEXT")
                merged = dict(own) if isinstance(own, Mapping) else {}
                merged.update(context)
                extra["CONTEXT"] = merged
            if disks:
                own_disks = own_template.get("DISK") or []
                own_disks = own_disks if isinstance(own_disks, list) else [own_disks]
                extra["DISK"] = [dict(d) for d in own_disks if isinstance(d, Mapping)] + \
                    [{k: str(v) for k, v in d.items()} for d in disks]
            document = as_xml_document(extra) if extra else ""
            vm_id = await self._call(f"create VM {name!r} from template {template_id}",
                                     self._server.template.instantiate,
                                     int(template_id), name, False, document, False,
                                     object_kind="VM template", object_id=int(template_id))
        else:
            body = {k: v for k, v in template.items() if k != "NAME"}
            own = body.get("CONTEXT")
            if context or own:
                merged = dict(own) if isinstance(own, Mapping) else {}
                merged.update(context)
                body["CONTEXT"] = merged
            body.update(extra)
            body["NAME"] = name
            vm_id = await self._call(f"create VM {name!r}", self._server.vm.allocate,
                                     as_xml_document(body), False)
        log.info("OpenNebula created VM %s (%s)", vm_id, name)
        return int(vm_id)

    async def vm_info(self, vm_id: int) -> VmInfo:
        """The VM's current state, address, tags and (if failed) the reason.

        Raises NotFoundError if the id does not exist. A terminated VM is still reported
        (phase DONE) as long as OpenNebula keeps its record.
        """
        vm = await self._call(f"read VM {vm_id}", self._server.vm.info, int(vm_id),
                              object_kind="VM", object_id=int(vm_id))
        return parsing.vm_info(vm)

    async def terminate(self, vm_id: int) -> None:
        """Ask OpenNebula to terminate the VM (``terminate-hard``).

        Asynchronous, as in oned: an accepted VM goes SHUTDOWN -> EPILOG -> DONE and its quota
        is freed only at DONE. Idempotent: a VM that is DONE, already shutting down, or unknown
        counts as success. oned refuses terminate in most ACTIVE states (PROLOG, BOOT, EPILOG,
        a soft SHUTDOWN, migrations...): then :class:`VmBusyError` (transient) says to ask
        again once the VM leaves that state. ``recover(delete)`` is never used: it needs ADMIN
        rights on the VM that a VM's owner does not have under oned's default umask.
        """
        what = f"terminate VM {vm_id}"
        try:
            await self._call(what, self._server.vm.action, "terminate-hard", int(vm_id),
                             object_kind="VM", object_id=int(vm_id))
        except NotFoundError:
            return
        except VmBusyError:
            try:
                info = await self.vm_info(vm_id)
            except NotFoundError:
                return
            if info.phase in (VmPhase.DONE, VmPhase.STOPPING):
                return  # gone, or on its way there (terminated by an earlier request)
            raise
        log.info("OpenNebula VM %s is being terminated", vm_id)

    async def tag(self, vm_id: int, tags: Mapping[str, str]) -> None:
        """Add or change USER_TEMPLATE attributes on the VM (append mode: others stay)."""
        # as an XML document (values in CDATA): oned's text syntax keeps backslashes and only
        # unescapes \", so text would change some values
        document = as_xml_document(check_tags(tags))
        await self._call(f"tag VM {vm_id}", self._server.vm.update, int(vm_id), document, 1,
                         object_kind="VM", object_id=int(vm_id))

    async def list_tagged(self, hub_id: str, *, mine_only: bool = True) -> list[VmInfo]:
        """VMs not DONE whose ``NEBULAHUB_HUB_ID`` tag equals ``hub_id``.

        Looks at the hub user's own VMs (``mine_only``) or every VM it may see.
        """
        pool = await self._call(f"list VMs of hub {hub_id!r}", self._server.vmpool.infoextended,
                                _MINE if mine_only else _ALL_VISIBLE, -1, -1, _NOT_DONE)
        found = [parsing.vm_info(vm) for vm in (getattr(pool, "VM", None) or [])]
        return [vm for vm in found
                if vm.tags.get(TAG_HUB_ID) == hub_id and vm.phase is not VmPhase.DONE]

    # ------------------------------------------------------------------ quota

    async def quota(self, cluster_id: int | None = None) -> Quota:
        """The hub user's VM quota (VMs, CPU, memory in MB): used and limit, from the global
        entry, or from the entry of ``cluster_id``."""
        user = await self._call("read the hub user's quota", self._server.user.info, -1)
        return parsing.quota(user, cluster_id)

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Release the thread pool; calls after this fail. Safe to call twice."""
        self.shutdown()

    def shutdown(self) -> None:
        """:meth:`close` for code without an event loop (e.g. at process exit)."""
        if self._closed:
            return
        self._closed = True
        # Threads stuck on a dead server end at the request timeout; do not wait for them.
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> "OpenNebulaClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
