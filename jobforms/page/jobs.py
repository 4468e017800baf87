""""My jobs": a card per job with its state badge, reason, parameters, results and actions.

Cards change in place when the service pushes a change (the page's feed calls
:meth:`JobList.changed`), so badges move without a reload. Each card can cancel its job, show
the tail of its output (stdout or stderr, read from an offset and refreshed while the job lives),
run it again (the page fills the form), and link its results: a download through the jobs
service, and "Plot results" for a data file the plotting app can open from the user's home.
Failed jobs stay in the list with their reason and their log.
"""
from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

import panel as pn
import param

from jobforms.states import JobState

from . import text
from .client import JobsClient, ServiceRefused, ServiceUnavailable

LOG_REFRESH = 2.0  # seconds between two looks at a live job's output
LOG_KEEP = 200_000  # characters of output a card keeps (the newest)
PAGE_SIZE = 10  # cards drawn at first and per "Show more" (a screenful and a bit)
PLOTTABLE = (".txt", ".dat", ".csv", ".tsv", ".tab", ".out", ".parquet", ".pq", ".h5", ".hdf5",
             ".hdf", ".root")  # what the plotting app opens
JOB_ID = re.compile(r"^[0-9a-f]{1,32}$")
LOG_STYLE = {"background": "#f6f8fa", "border": "1px solid #ddd", "border-radius": "4px",
             "max-height": "260px", "overflow": "auto"}
CARD_STYLE = {"border": "1px solid #dee2e6", "border-radius": "6px", "padding": "2px 8px"}


@dataclass(frozen=True)
class Links:
    """Where the page's links lead: the hub's base URL (for the jobs service), the user's server
    (for the plotting app) and the user's home (where results of local and batch jobs land)."""

    hub_base: str
    server_prefix: str
    home: str

    @classmethod
    def from_environment(cls) -> "Links":
        return cls(os.environ.get("JUPYTERHUB_BASE_URL", "/"),
                   os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/"), os.path.expanduser("~"))

    def result(self, job: dict, path: str) -> str:
        return (f"{self.hub_base.rstrip('/')}/services/nebulahub-jobs/api/jobs/"
                f"{text.url_path(job['id'])}/results/{text.url_path(*path.split('/'))}")

    def home_path(self, job: dict, path: str) -> Optional[str]:
        """The result's path inside the home, if it is there (local and batch jobs)."""
        rel = os.path.join("jobs", f"{job['app']}-{job['id']}", path)
        return rel if os.path.isfile(os.path.join(self.home, rel)) else None

    def plot(self, home_path: str) -> str:
        # the plotting app lists the home's data files; ?file= names the one to open
        return f"{self.server_prefix.rstrip('/')}/nebulahub-plot/?file={text.url_path(home_path)}"


class JobCard(pn.viewable.Viewer):
    """One job; ``job`` is the service's JSON of it and is replaced on every change."""

    job = param.Dict(default={})
    log_open = param.Boolean(default=False, label="Log")
    stream = param.Selector(default="stdout", objects=["stdout", "stderr"], label="Output")
    log_text = param.String(default="", doc="HTML: the output read so far.")
    message = param.String(default="", doc="HTML: why the last action did not work.")
    cancel = param.Event(label="Cancel")
    again = param.Event(label="Run again")

    def __init__(self, job: dict, client: JobsClient, links: Links,
                 on_again: Callable[[dict], Awaitable[None]], **params):
        super().__init__(job=job, **params)
        self.client, self.links, self._on_again = client, links, on_again
        self._offset, self._raw_log = 0, ""
        self._log_task: Optional[asyncio.Task] = None
        self.summary = pn.pane.HTML(self._summary(), sizing_mode="stretch_width", margin=(0, 5))
        live = self.param.job.rx.pipe(is_live)
        buttons = pn.Row(
            pn.widgets.Toggle.from_param(self.param.log_open, width=80, color="light"),
            pn.widgets.Button.from_param(self.param.cancel, width=80, color="danger",
                                         visible=live),
            pn.widgets.Button.from_param(self.param.again, width=100), margin=(0, 0))
        self._log = None  # made when first opened: a list of many jobs stays light
        self._page = pn.Column(self.summary, buttons, css_classes=["nh-job", f"nh-job-{job['id']}"],
                               styles=CARD_STYLE, sizing_mode="stretch_width", margin=(4, 0))

    def __panel__(self):
        return self._page

    # ---- the job changed -----------------------------------------------------------------------
    @param.depends("job", "message", watch=True)
    def _redraw(self) -> None:
        self.summary.object = self._summary()
        if self.log_open and self._log_task is None and is_live(self.job):
            self._start_log()

    def _summary(self) -> str:
        job, links = self.job, self.links
        created = (job.get("created") or "")[:19].replace("T", " ")
        head = (f"{text.badge(job.get('state', ''))} "
                + text.html_format("<strong>{}</strong> <span style='color:#666'>{} UTC · job "
                                   "<code class='nh-job-id'>{}</code> · {}</span>",
                                   job.get("app_name") or job.get("app"), created, job.get("id"),
                                   job.get("backend", "")))
        lines = [f"<div class='nh-job-head'>{head}</div>"]
        if job.get("reason"):
            lines.append(text.html_format("<div class='nh-reason'>{}</div>", job["reason"]))
        params = job.get("parameters") or {}
        if params:
            shown = " · ".join(text.html_format("{} = {}", k, _short(text.shown_value(v)))
                               for k, v in params.items())
            lines.append(f"<div class='nh-params' style='color:#444;font-size:90%'>{shown}</div>")
        results = job.get("results") or []
        if results and job.get("state") == JobState.DONE.value:
            items = []
            for path in results:
                item = text.link(path, links.result(job, path), "nh-result")
                at_home = links.home_path(job, path)
                if at_home and path.lower().endswith(PLOTTABLE):
                    item += " " + text.link("Plot results", links.plot(at_home), "nh-plot-results")
                    item += text.html_format(" <span style='color:#666'>(~/{})</span>", at_home)
                items.append(item)
            lines.append("<div class='nh-results'>Results: " + " · ".join(items) + "</div>")
        if self.message:
            lines.append(f"<div class='nh-job-message' style='color:#b02a37'>{self.message}</div>")
        return "".join(lines)

    # ---- actions -------------------------------------------------------------------------------
    @param.depends("cancel", watch=True)
    async def _cancel(self) -> None:
        try:
            self.job = await self.client.cancel(self.job["id"])
            self.message = ""
        except (ServiceUnavailable, ServiceRefused) as e:
            self.message = text.paragraph("{}", " ".join(getattr(e, "errors", {}).values()) or e)

    @param.depends("again", watch=True)
    async def _again(self) -> None:
        await self._on_again(self.job)

    @param.depends("log_open", watch=True)
    def _toggle_log(self) -> None:
        if not self.log_open:
            self._stop_log()
            if self._log is not None and self._log in self._page.objects:
                self._page.remove(self._log)
            return
        if self._log is None:
            if self.job.get("state") == JobState.FAILED.value:
                self.stream = "stderr"  # why it failed is there
            self._log = pn.Column(
                pn.widgets.RadioButtonGroup.from_param(self.param.stream, color="light"),
                pn.pane.HTML(self.param.log_text, css_classes=["nh-log"], styles=LOG_STYLE,
                             sizing_mode="stretch_width"),
                sizing_mode="stretch_width", margin=0)
        self._page.append(self._log)
        self._start_log()

    @param.depends("stream", watch=True)
    def _switch_stream(self) -> None:
        self._stop_log()
        self._offset, self._raw_log = 0, ""
        self.log_text = ""
        if self.log_open:
            self._start_log()

    def _start_log(self) -> None:
        self._stop_log()
        self._log_task = asyncio.ensure_future(self._follow_log())

    def _stop_log(self) -> None:
        if self._log_task is not None:
            self._log_task.cancel()
            self._log_task = None

    async def _follow_log(self) -> None:
        """Read the output from where the last read ended; again every few seconds while the
        job lives (one read after it ended catches the last lines)."""
        try:
            while True:
                live = is_live(self.job)
                try:
                    part = await self.client.log(self.job["id"], self.stream, self._offset)
                except (ServiceUnavailable, ServiceRefused) as e:
                    self.message = text.paragraph("The log cannot be read now: {}", e)
                    return
                if part.get("text"):
                    self._raw_log = (self._raw_log + part["text"])[-LOG_KEEP:]
                self._offset = int(part.get("offset") or self._offset)
                self.log_text = _log_html(self._raw_log, self.stream)
                if not live:
                    return
                await asyncio.sleep(LOG_REFRESH)
        finally:
            if self._log_task is asyncio.current_task():
                self._log_task = None

    def close(self) -> None:
        self._stop_log()


class JobList(pn.viewable.Viewer):
    """The user's jobs, newest first; ``show_more`` draws the next :data:`PAGE_SIZE` cards."""

    jobs = param.Dict(default={}, doc="Job id -> the service's JSON of it.")
    shown = param.Integer(default=PAGE_SIZE)
    show_more = param.Event(label="Show more")
    count = param.String(default="", doc="HTML: how many jobs, how many shown.")

    def __init__(self, client: JobsClient, links: Links,
                 on_again: Callable[[dict], Awaitable[None]], **params):
        super().__init__(**params)
        self.client, self.links, self._on_again = client, links, on_again
        self.cards: dict[str, JobCard] = {}
        self._column = pn.Column(sizing_mode="stretch_width", css_classes=["nh-jobs"], margin=0)
        more = pn.widgets.Button.from_param(self.param.show_more, width=120,
                                            visible=self.param.count.rx.pipe(lambda c: "newest" in c))
        self._page = pn.Column(pn.pane.HTML(self.param.count, css_classes=["nh-jobs-count"]),
                               self._column, more, sizing_mode="stretch_width")

    def __panel__(self):
        return self._page

    def replace_all(self, jobs: list[dict]) -> None:
        """The whole list as the service gave it (cards of known jobs are kept and updated)."""
        fresh = {j["id"]: j for j in jobs if JOB_ID.match(str(j.get("id", "")))}
        for job_id in set(self.cards) - set(fresh):
            self.cards.pop(job_id).close()
        for job_id, job in fresh.items():
            if job_id in self.cards and self.cards[job_id].job != job:
                self.cards[job_id].job = job
        self.jobs = fresh
        self._draw()

    def changed(self, job: dict) -> Optional[dict]:
        """A job changed (or is new); the job as it was before, if known."""
        if not JOB_ID.match(str(job.get("id", ""))):
            return None
        before = self.jobs.get(job["id"])
        self.jobs = {**self.jobs, job["id"]: job}
        card = self.cards.get(job["id"])
        if card is not None:
            card.job = job
        if before is None:
            self._draw()
        return before

    @param.depends("show_more", watch=True)
    def _more(self) -> None:
        self.shown += PAGE_SIZE
        self._draw()

    def _draw(self) -> None:
        newest = sorted(self.jobs.values(), key=lambda j: j.get("created") or "", reverse=True)
        visible = newest[:self.shown]
        for job in visible:
            if job["id"] not in self.cards:
                self.cards[job["id"]] = JobCard(job, self.client, self.links, self._on_again)
        self._column.objects = [self.cards[j["id"]] for j in visible]
        if not newest:
            self.count = "<p>No jobs yet: choose an app, fill its form and submit.</p>"
        elif len(newest) > len(visible):
            self.count = text.paragraph("{} jobs; the newest {} are shown.", len(newest), len(visible))
        else:
            self.count = text.paragraph("{} job{}.", len(newest), "" if len(newest) == 1 else "s")

    def close(self) -> None:
        for card in self.cards.values():
            card.close()


def is_live(job: dict) -> bool:
    try:
        return not JobState(job.get("state")).is_final
    except ValueError:
        return False


def _short(value: str, most: int = 120) -> str:
    return value if len(value) <= most else value[:most] + "…"


def _log_html(raw: str, stream: str) -> str:
    if not raw:
        return text.paragraph("Nothing on {} yet.", stream)
    return ("<pre style='margin:4px;white-space:pre-wrap;word-break:break-all'>"
            f"{text.html(raw)}</pre>")
