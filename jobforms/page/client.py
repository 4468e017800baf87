"""How the Jobs page reaches the jobs service: from the user's server, with the server's own token.

The spawner tunnels the hub-managed jobs service to the server's machine and names the URL the
server reaches it at in ``$NEBULAHUB_SERVICES`` (JSON, service name -> URL). The server's
``$JUPYTERHUB_API_TOKEN`` may call the service, which then acts for the server's owner. The token
stays in this process: it is sent in a header to the service and never reaches a page, an argv
or a log line.

Every call answers the service's JSON, or raises :class:`ServiceUnavailable` (not configured, not
answering: a sentence for the page) or :class:`ServiceRefused` (the service's sentence and its
errors by field).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any, AsyncIterator, Mapping, Optional

import aiohttp

SERVICE = "nebulahub-jobs"
ICON_TYPES = {"image/svg+xml", "image/png", "image/jpeg"}


class ServiceUnavailable(Exception):
    """The jobs service cannot be asked now; the message is a sentence for the page."""


class ServiceRefused(Exception):
    """The service said no: its sentence, and ``errors`` by field (may be empty)."""

    def __init__(self, status: int, message: str, errors: Optional[Mapping[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.errors = dict(errors or {})


NOT_CONFIGURED = ("The jobs service is not set up for this hub (this server was not given its "
                  "address), so jobs cannot be run from here. Ask the hub's admin.")


def service_url(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The jobs service's URL as this server reaches it, or None when the hub gave none."""
    try:
        services = json.loads(environ.get("NEBULAHUB_SERVICES") or "{}")
    except ValueError:
        return None
    url = services.get(SERVICE) if isinstance(services, dict) else None
    return url.rstrip("/") + "/" if isinstance(url, str) and url.startswith("http") else None


class JobsClient:
    """The jobs service's REST API for the server's owner."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30):
        self.base = base_url.rstrip("/") + "/api/"
        self._headers = {"Authorization": f"token {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: Optional[aiohttp.ClientSession] = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "JobsClient":
        """The client for this server, or :class:`ServiceUnavailable` saying what is missing."""
        url, token = service_url(environ), environ.get("JUPYTERHUB_API_TOKEN", "")
        if not url or not token:
            raise ServiceUnavailable(NOT_CONFIGURED)
        return cls(url, token)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, *, body: Any = None,
                    params: Optional[dict] = None) -> Any:
        try:
            async with self._http().request(method, self.base + path, json=body,
                                            params=params, allow_redirects=False) as r:
                data = await _json(r)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise ServiceUnavailable(_unreachable(e)) from None
        if r.status >= 500 or r.status in (301, 302, 401, 403):
            raise ServiceUnavailable(_refused_status(r.status, data))
        if r.status >= 400:
            said = data if isinstance(data, dict) else {}
            errors = said.get("errors")
            raise ServiceRefused(r.status, str(said.get("message") or f"Refused ({r.status})."),
                                 errors if isinstance(errors, dict) else {})
        return data

    # ---- apps and forms ----------------------------------------------------------------------
    async def apps(self) -> list[dict]:
        return await self._call("GET", "apps")

    async def check(self, app_id: str, values: dict) -> dict:
        """``{"errors": {field: sentence}, "form": [field, ...]}`` for partial values."""
        return await self._call("POST", f"apps/{_segment(app_id)}/check", body={"values": values})

    async def icon(self, app_id: str) -> Optional[str]:
        """The app's icon file as a ``data:`` URL for an ``<img>`` (None: it has none)."""
        try:
            async with self._http().get(self.base + f"apps/{_segment(app_id)}/icon") as r:
                kind = r.headers.get("Content-Type", "").split(";")[0].strip()
                if r.status != 200 or kind not in ICON_TYPES:
                    return None
                data = await r.content.read(256 * 1024 + 1)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None
        if len(data) > 256 * 1024:
            return None
        return f"data:{kind};base64,{base64.b64encode(data).decode()}"

    async def saved(self, app_id: str) -> dict[str, dict]:
        """The user's saved parameter sets of an app by name (``last``: the last submitted)."""
        return await self._call("GET", f"apps/{_segment(app_id)}/parameters")

    async def save(self, app_id: str, name: str, values: dict) -> None:
        await self._call("PUT", f"apps/{_segment(app_id)}/parameters/{_segment(name)}",
                         body={"values": values})

    async def quota(self) -> dict:
        return await self._call("GET", "quota")

    # ---- jobs ----------------------------------------------------------------------------------
    async def jobs(self) -> list[dict]:
        return await self._call("GET", "jobs")

    async def job(self, job_id: str) -> dict:
        return await self._call("GET", f"jobs/{_segment(job_id)}")

    async def submit(self, app_id: str, values: dict, clone_of: Optional[str] = None) -> dict:
        body = {"app": app_id, "values": values}
        if clone_of:
            body["clone_of"] = clone_of
        return await self._call("POST", "jobs", body=body)

    async def cancel(self, job_id: str) -> dict:
        return await self._call("POST", f"jobs/{_segment(job_id)}/cancel")

    async def log(self, job_id: str, stream: str, offset: int) -> dict:
        """``{"text", "offset" (to ask from next), "size", "state"}``."""
        return await self._call("GET", f"jobs/{_segment(job_id)}/log",
                                params={"stream": stream, "offset": str(offset)})

    async def result(self, job_id: str, path: str) -> AsyncIterator[bytes]:
        """A result file's bytes, in chunks (no limit on its size: it is streamed)."""
        url = (self.base + f"jobs/{_segment(job_id)}/results/"
               + "/".join(_segment(p) for p in path.split("/")))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=120)
        try:
            async with self._http().get(url, timeout=timeout, allow_redirects=False) as r:
                if r.status == 404:
                    raise ServiceRefused(404, f"The service has no result {path!r}.")
                if r.status != 200:
                    raise ServiceUnavailable(_refused_status(r.status, await _json(r)))
                async for chunk in r.content.iter_chunked(1 << 20):
                    yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise ServiceUnavailable(_unreachable(e)) from None

    async def clone(self, job_id: str) -> dict:
        """``{"app", "values", "changed": {field: {"default", "value"}}, "clone_of"}``."""
        return await self._call("GET", f"jobs/{_segment(job_id)}/clone")

    async def events(self) -> AsyncIterator[Optional[dict]]:
        """None as soon as the stream is open, then every change of the user's jobs as the
        service pushes it (server-sent events), until the stream ends;
        :class:`ServiceUnavailable` when it cannot be opened or breaks."""
        # no total limit: the stream lives as long as the page; the service writes a keep-alive
        # every 15 s, so 60 s of silence means the connection is gone
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)
        try:
            async with self._http().get(self.base + "events", timeout=timeout,
                                        allow_redirects=False) as r:
                if r.status != 200:
                    raise ServiceUnavailable(_refused_status(r.status, await _json(r)))
                yield None
                event, data = "", []
                async for raw in r.content:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif not line:
                        if event == "job" and data:
                            try:
                                yield json.loads("\n".join(data))
                            except ValueError:
                                pass
                        event, data = "", []
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise ServiceUnavailable(_unreachable(e)) from None


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


async def _json(r: aiohttp.ClientResponse) -> dict | list:
    try:
        return await r.json(content_type=None)
    except ValueError:
        return {}


def _unreachable(e: Exception) -> str:
    what = type(e).__name__ if isinstance(e, asyncio.TimeoutError) else (str(e) or type(e).__name__)
    return (f"The jobs service does not answer ({what}). Your jobs are kept; "
            "try again in a minute.")


def _refused_status(status: int, data) -> str:
    if status in (401, 403):
        return ("The jobs service does not accept this server's credentials (HTTP "
                f"{status}); restart your server from the hub's home page.")
    if status in (301, 302):
        return "The jobs service asked this server to log in, which it cannot do here."
    message = data.get("message") if isinstance(data, dict) else ""
    return f"The jobs service failed (HTTP {status}{': ' + str(message) if message else ''})."
