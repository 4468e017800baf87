"""The Jobs page: the app catalogue, the chosen app's form, and "My jobs", live.

:class:`JobsPage` is a Panel ``Viewer`` for one browser tab. It draws at once and then reads the
apps, the jobs and the quota from the jobs service (:mod:`.client`), and follows the service's
event stream through the process's shared :class:`~.feed.JobFeed`: every change of a job moves
its card's badge in place, and a job that ends while the page is open brings a notice. When the
service is not configured or does not answer, the page says so in a sentence and tries again.

Serve it with ``python -m jobforms.page.launcher`` (what jupyter-server-proxy runs, see
:mod:`.serverproxy`).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

import panel as pn
import param

from jobforms.states import JobState

from . import text
from .catalogue import Catalogue
from .client import JobsClient, ServiceRefused, ServiceUnavailable
from .feed import JobChanged, JobFeed, Reconnected, StreamDown
from .form import JobFormView
from .jobs import JobList, Links

log = logging.getLogger(__name__)
ALERT_STYLE = {"background": "#fff3cd", "color": "#664d03", "border": "1px solid #ffecb5",
               "border-radius": "4px", "padding": "0 12px"}
NOTICE_MS = 10_000
RETRY_PAUSE = 10.0  # seconds between two tries to reach a service that did not answer
ENDINGS = {JobState.DONE.value: "success", JobState.FAILED.value: "error",
           JobState.CANCELLED.value: "info"}


class JobsPage(pn.viewable.Viewer):
    """One tab of the Jobs page."""

    problem = param.String(default="", doc="HTML: why the page cannot work now (a sentence).")
    live_note = param.String(default="", doc="HTML: live updates are paused, and why.")

    def __init__(self, client: JobsClient, feed: JobFeed, links: Links, **params):
        super().__init__(**params)
        self.client, self.feed, self.links = client, feed, links
        self.catalogue = Catalogue(client, self._open_app)
        self.form = JobFormView(client, self._submitted, self.unavailable)
        self.jobs = JobList(client, links, self._run_again)
        self.notifications = pn.state.notifications  # this tab's (used from background tasks)
        self._tasks: set[asyncio.Task] = set()
        self._queue: Optional[asyncio.Queue] = None
        self._page = self._layout()

    def __panel__(self):
        return self._page

    def _layout(self):
        left = pn.Column(
            pn.pane.HTML("<h3 style='margin:4px 0'>1. Choose an app</h3>"), self.catalogue,
            pn.pane.HTML(self.form.state.param.app_name.rx.pipe(
                lambda name: text.html_format("<h3 style='margin:12px 0 4px'>2. {}</h3>", name)
                if name else ""), css_classes=["nh-form-title"]),
            self.form, width=520, margin=(0, 10))
        right = pn.Column(
            pn.pane.HTML("<h3 style='margin:4px 0'>My jobs</h3>"),
            pn.pane.HTML(self.param.live_note, visible=self.param.live_note.rx.bool(),
                         css_classes=["nh-live-note"], styles={"color": "#666"}),
            self.jobs, sizing_mode="stretch_width", min_width=420, margin=(0, 10))
        return pn.Column(
            pn.pane.HTML("<h2 style='margin:6px 0'>Jobs</h2>", margin=(0, 10)),
            pn.pane.HTML(self.param.problem, visible=self.param.problem.rx.bool(),
                         css_classes=["nh-problem"], styles=ALERT_STYLE, sizing_mode="stretch_width"),
            pn.Row(left, right, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    # ---- life of the tab -----------------------------------------------------------------------
    async def start(self) -> None:
        """Read apps, jobs and quota; follow changes. Tried again while the service is away."""
        self._queue = self.feed.subscribe()
        self._spawn(self._follow())
        while True:
            try:
                await asyncio.gather(self.catalogue.load(), self.reload_jobs())
                self.problem = ""
                return
            except ServiceUnavailable as e:
                self.unavailable(str(e))
            except ServiceRefused as e:
                self.unavailable(f"The jobs service refused to list your apps and jobs: {e}")
            await asyncio.sleep(RETRY_PAUSE)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._queue is not None:
            self.feed.unsubscribe(self._queue)
        self.form.close()
        self.jobs.close()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def unavailable(self, sentence: str) -> None:
        self.problem = text.paragraph("{}", sentence)

    async def reload_jobs(self) -> None:
        self.jobs.replace_all(await self.client.jobs())

    # ---- live changes --------------------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, JobChanged):
                    self._job_changed(item.job)
                elif isinstance(item, Reconnected):
                    self.live_note = ""
                    await self.reload_jobs()
                elif isinstance(item, StreamDown):
                    self.live_note = text.paragraph("Live updates are paused: {}", item.sentence)
            except (ServiceUnavailable, ServiceRefused) as e:
                self.unavailable(str(e))
            except Exception:  # a bug in one update must not stop the next ones
                log.exception("Updating the Jobs page failed")

    def _job_changed(self, job: dict) -> None:
        before = self.jobs.changed(job)
        state = job.get("state")
        if before is not None and before.get("state") != state and state in ENDINGS:
            self._notify(job)
        if before is None or before.get("state") != state:
            self._spawn(self.form.refresh_quota())

    def _notify(self, job: dict) -> None:
        if self.notifications is None:
            return
        # Notyf shows its message as HTML: every part is escaped
        said = {JobState.DONE.value: "is done.", JobState.CANCELLED.value: "was cancelled.",
                JobState.FAILED.value: "failed: {}".format(job.get("reason") or "see its log.")}
        message = text.html_format("{} (job {}) {}", job.get("app_name") or job.get("app"),
                                   job.get("id"), said[job["state"]])
        getattr(self.notifications, ENDINGS[job["state"]])(message, duration=NOTICE_MS)

    # ---- between the parts ---------------------------------------------------------------------
    async def _open_app(self, app: dict) -> None:
        await self.form.open_app(app)

    async def _submitted(self, job: dict) -> None:
        self.jobs.changed(job)

    async def _run_again(self, job: dict) -> None:
        """Fill the form with a job's values, saying what differs from the app's defaults."""
        try:
            clone = await self.client.clone(job["id"])
        except ServiceUnavailable as e:
            self.unavailable(str(e))
            return
        except ServiceRefused as e:
            self.unavailable(f"Job {job['id']} cannot be run again: {e}")
            return
        app = self.catalogue.app(clone.get("app", ""))
        if app is None:
            self.unavailable(f"The app of job {job['id']} is not offered any more.")
            return
        labels = {f["name"]: f["label"] for f in app["form"]}
        changed = clone.get("changed") or {}
        if changed:
            rows = "; ".join(text.html_format("{}: {} → {}", labels.get(k, k),
                                              text.shown_value(v.get("default")) or "(none)",
                                              text.shown_value(v.get("value")) or "(none)")
                             for k, v in changed.items())
            what = f"Differs from the app's defaults: {rows}."
        else:
            what = "All values are the app's defaults."
        note = (text.html_format("<p>Running job <code>{}</code> again. ", job["id"]) + what + "</p>")
        self.catalogue.chosen = app["id"]
        await self.form.open_app(app, clone.get("values") or {}, note=note,
                                 clone_of=clone.get("clone_of") or job["id"])


_shared: dict[str, object] = {}


def shared_feed(client: JobsClient) -> JobFeed:
    """The process's one follower of the service's events."""
    if "feed" not in _shared:
        _shared["feed"] = JobFeed(client)
    return _shared["feed"]


def shared_client() -> JobsClient:
    """The process's one client (one connection pool), or :class:`ServiceUnavailable`."""
    if "client" not in _shared:
        _shared["client"] = JobsClient.from_environment()
    return _shared["client"]


def create_page():
    """A fresh page for one browser tab (``jobforms.page.launcher`` serves it)."""
    pn.extension(notifications=True)
    try:
        client = shared_client()
    except ServiceUnavailable as e:
        return pn.Column(pn.pane.HTML("<h2>Jobs</h2>"),
                         pn.pane.HTML(text.paragraph("{}", e), css_classes=["nh-problem"],
                                      styles=ALERT_STYLE))
    page = JobsPage(client, shared_feed(client), Links.from_environment())
    pn.state.onload(page.start)
    pn.state.on_session_destroyed(lambda context: page.close())
    return page
