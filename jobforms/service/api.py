"""The jobs service's REST API, behind the hub's login.

Browsers come with the hub's OAuth cookie, scripts with an API token holding
``access:services!service=<this service>``; either way a request acts for one hub user and
sees only that user's jobs (another user's job is "not found": nothing about it leaks).

=========================================  ======================================================
GET  /api/apps                             apps with their form and request schema
POST /api/apps/<app>/check                 live validation of partial values: {field: message}
GET  /api/apps/<app>/parameters            the user's saved parameter sets (``last`` included)
PUT  /api/apps/<app>/parameters/<name>     save a named set
GET  /api/jobs                             the user's jobs, newest first
POST /api/jobs                             submit {"app": id, "values": {...}} (400 names fields)
GET  /api/jobs/<id>                        one job with its state history
POST /api/jobs/<id>/cancel                 cancel
GET  /api/jobs/<id>/log?stream=&offset=    the program's output from an offset
GET  /api/jobs/<id>/results/<path>         download a result file
GET  /api/jobs/<id>/clone                  the job's values and what differs from the defaults
GET  /api/events                           server-sent events: every change of the user's jobs
GET  /api/openapi.json                     this API, described
GET  /api/apps/<app>/icon                  the app's icon file (an emoji icon is in /api/apps)
GET  /                                     redirects to the Jobs page in the user's server
=========================================  ======================================================
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.escape import url_escape
from tornado.iostream import StreamClosedError

from .engine import JobEngine, NotFound, Refused


class ApiHandler(HubOAuthenticated, web.RequestHandler):
    """JSON in and out; errors as {"status", "message", "errors"}."""

    @property
    def engine(self) -> JobEngine:
        return self.settings["engine"]

    @property
    def user(self) -> str:
        model = self.get_current_user()
        if not model:
            raise web.HTTPError(403)
        name = model["name"]
        allowed = self.engine.cfg.allowed_users
        if allowed and name not in allowed:
            raise web.HTTPError(403, "This hub user may not use the jobs service.")
        return name

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except json.JSONDecodeError:
            raise web.HTTPError(400, "The request body is not JSON.") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "The request body must be a JSON object.")
        return data

    def send(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message,
                                "errors": getattr(exc, "errors", {})}))

    async def run(self, coro):
        try:
            return await coro
        except NotFound:
            raise web.HTTPError(404, "Not found.") from None
        except Refused as e:
            error = web.HTTPError(400, str(e))
            error.errors = e.errors
            raise error from None


class AppsHandler(ApiHandler):
    @web.authenticated
    async def get(self):
        self.user  # noqa: B018  (checks who may)
        out = []
        for app in self.engine.apps.values():
            out.append({"id": app.id, "name": app.name, "description": app.description,
                        "category": app.category, "icon": app.icon,
                        "backends": app.backends, "outputs": app.outputs,
                        "form": [f.model_dump(mode="json") for f in app.form()],
                        "schema": app.request_schema()})
        self.send(out)


class QuotaHandler(ApiHandler):
    @web.authenticated
    async def get(self):
        self.send(await self.run(self.engine.quota(self.user)))


class CheckHandler(ApiHandler):
    @web.authenticated
    async def post(self, app_id):
        self.user  # noqa: B018
        app = self.engine.apps.get(app_id)
        if app is None:
            raise web.HTTPError(404, "No such app.")
        values = self.body().get("values", {})
        self.send({"errors": app.check(values),
                   "form": [f.model_dump(mode="json") for f in app.form(values)]})


class ParametersHandler(ApiHandler):
    @web.authenticated
    async def get(self, app_id, name=None):
        sets = await self.run(self.engine.saved(self.user, app_id))
        self.send(sets if name is None else sets.get(name) or {})

    @web.authenticated
    async def put(self, app_id, name):
        await self.run(self.engine.save(self.user, app_id, name, self.body().get("values", {})))
        self.send({"saved": name})


class JobsHandler(ApiHandler):
    @web.authenticated
    async def get(self):
        self.send(await self.run(self.engine.list_jobs(self.user)))

    @web.authenticated
    async def post(self):
        data = self.body()
        job = await self.run(self.engine.submit(self.user, str(data.get("app", "")),
                                                data.get("values") or {},
                                                clone_of=data.get("clone_of")))
        self.send(job, 201)


class JobHandler(ApiHandler):
    @web.authenticated
    async def get(self, job_id):
        self.send(await self.run(self.engine.get_job(self.user, job_id)))


class CancelHandler(ApiHandler):
    @web.authenticated
    async def post(self, job_id):
        self.send(await self.run(self.engine.cancel(self.user, job_id)))


class LogHandler(ApiHandler):
    @web.authenticated
    async def get(self, job_id):
        try:
            offset = int(self.get_argument("offset", "0"))
        except ValueError:
            raise web.HTTPError(400, "offset: a whole number of bytes") from None
        self.send(await self.run(self.engine.log_tail(
            self.user, job_id, self.get_argument("stream", "stdout"), offset)))


class ResultHandler(ApiHandler):
    @web.authenticated
    async def get(self, job_id, path):
        f = await self.run(self.engine.result_file(self.user, job_id, path))
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition",
                        f"attachment; filename*=UTF-8''{url_escape(os.path.basename(path), plus=False)}")
        with f:
            while chunk := await asyncio.to_thread(f.read, 1 << 20):
                self.write(chunk)
                await self.flush()
        self.finish()


class CloneHandler(ApiHandler):
    @web.authenticated
    async def get(self, job_id):
        self.send(await self.run(self.engine.clone(self.user, job_id)))


class EventsHandler(ApiHandler):
    """Server-sent events: one ``job`` event per change of one of the user's jobs."""

    @web.authenticated
    async def get(self):
        user = self.user
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        queue = self.engine.subscribe(user)
        try:
            self.write(": connected\n\n")
            await self.flush()
            while True:
                try:
                    job = await asyncio.wait_for(queue.get(), 15)
                    self.write(f"event: job\ndata: {json.dumps(job)}\n\n")
                except asyncio.TimeoutError:
                    self.write(": keep-alive\n\n")
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            self.engine.unsubscribe(user, queue)


class OpenApiHandler(ApiHandler):
    @web.authenticated
    async def get(self):
        self.user  # noqa: B018
        self.send(openapi(self.engine))


ICON_TYPES = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
              ".jpeg": "image/jpeg"}


class IconHandler(ApiHandler):
    """An app's icon file, for the Jobs page (which shows it as an image, never as a document)."""

    @web.authenticated
    async def get(self, app_id):
        self.user  # noqa: B018
        app = self.engine.apps.get(app_id)
        path = app.icon_path if app is not None else None
        kind = ICON_TYPES.get(path.suffix.lower()) if path is not None else None
        if kind is None or not path.is_file():
            raise web.HTTPError(404, "This app has no icon file.")
        self.set_header("Content-Type", kind)
        # opened on its own, an SVG could run script: not here
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(await asyncio.to_thread(path.read_bytes))


class PageRedirect(web.RequestHandler):
    """The service's own address (the hub's Services menu links here) leads to the Jobs page in
    the user's server; the hub offers to start the server first when it is not running."""

    def get(self):
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/")
        self.redirect(f"{base}/hub/user-redirect/nebulahub-jobs/")


def openapi(engine: JobEngine) -> dict:
    """This API as OpenAPI 3: each app's submit body is the schema of its compiled model."""
    job = {"type": "object", "properties": {"id": {"type": "string"},
                                            "state": {"type": "string"},
                                            "reason": {"type": "string"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "NebulaHub jobs", "version": "1"},
        "paths": {
            "/api/apps": {"get": {"summary": "Apps with their forms"}},
            "/api/jobs": {
                "get": {"summary": "My jobs", "responses": {"200": {"description": "jobs"}}},
                "post": {"summary": "Submit a job", "requestBody": {"content": {
                    "application/json": {"schema": {"oneOf": [
                        {"type": "object", "properties": {
                            "app": {"const": app.id}, "values": app.request_schema()}}
                        for app in engine.apps.values()]}}}},
                    "responses": {"201": {"description": "the job",
                                          "content": {"application/json": {"schema": job}}},
                                  "400": {"description": "errors by field"}}}},
            "/api/quota": {"get": {"summary": "Used and free of your limits and cloud quota"}},
            "/api/jobs/{id}": {"get": {"summary": "A job with its history"}},
            "/api/jobs/{id}/cancel": {"post": {"summary": "Cancel a job"}},
            "/api/jobs/{id}/log": {"get": {"summary": "Output from an offset"}},
            "/api/jobs/{id}/results/{path}": {"get": {"summary": "A result file"}},
            "/api/jobs/{id}/clone": {"get": {"summary": "Values to submit again"}},
            "/api/events": {"get": {"summary": "Server-sent events of my jobs"}},
        },
    }


def routes(prefix: str) -> list:
    p = prefix.rstrip("/")
    return [
        (rf"{p}/api/apps", AppsHandler),
        (rf"{p}/api/apps/([^/]+)/check", CheckHandler),
        (rf"{p}/api/apps/([^/]+)/parameters", ParametersHandler),
        (rf"{p}/api/apps/([^/]+)/parameters/([^/]+)", ParametersHandler),
        (rf"{p}/api/quota", QuotaHandler),
        (rf"{p}/api/jobs", JobsHandler),
        (rf"{p}/api/jobs/([0-9a-f]+)", JobHandler),
        (rf"{p}/api/jobs/([0-9a-f]+)/cancel", CancelHandler),
        (rf"{p}/api/jobs/([0-9a-f]+)/log", LogHandler),
        (rf"{p}/api/jobs/([0-9a-f]+)/results/(.+)", ResultHandler),
        (rf"{p}/api/jobs/([0-9a-f]+)/clone", CloneHandler),
        (rf"{p}/api/events", EventsHandler),
        (rf"{p}/api/openapi.json", OpenApiHandler),
        (rf"{p}/api/apps/([^/]+)/icon", IconHandler),
        (rf"{p}/?", PageRedirect),
        (rf"{p}/oauth_callback", HubOAuthCallbackHandler),
    ]
