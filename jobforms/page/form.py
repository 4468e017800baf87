"""The chosen app's form: generated from the service's field descriptions, checked live as the
user types, with saved sets, the quota, and submit.

The service describes every field for the current values (:meth:`jobforms.app.App.form`), so
a rule that hides, disables, bounds or narrows a field acts here exactly as it will at submit.
Only the fields the user touched (typed, picked, or got from a loaded set or a cloned job) are
sent: an untouched field shows the value the service works with, e.g. a default that follows a
limit another field sets. Each change is checked after a short pause (the last change wins);
errors come back by field and are shown beside it, those about the whole request above Submit.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional

import panel as pn
import param

from . import text
from .client import JobsClient, ServiceRefused, ServiceUnavailable
from .fields import NO_VALUE, FieldView

CHECK_PAUSE = 0.3  # seconds of quiet typing before a live check
GROUP_TITLES = {"parameters": "Parameters", "resources": "Resources", "results": "Results"}
LAST = "last"  # the set the service remembers at every submit
ALERT_STYLE = {"background": "#f8d7da", "color": "#721c24", "border-radius": "4px", "padding": "0 10px"}
NOTE_STYLE = {"background": "#e7f1ff", "border-radius": "4px", "padding": "0 10px"}


class FormState(param.Parameterized):
    """What the form holds beyond its widgets."""

    app_id = param.String(default="", doc="The chosen app ('' before one is chosen).")
    app_name = param.String(default="")
    touched = param.List(default=[], item_type=str, doc="Fields the user gave a value.")
    errors = param.Dict(default={}, doc="Field -> sentence, from the last check or submit.")
    general_error = param.String(default="", doc="HTML: what is wrong with the whole request.")
    note = param.String(default="", doc="HTML: where the values came from (a set, a cloned job).")
    quota = param.String(default="", doc="HTML: used and free of the user's limits.")
    saved_names = param.List(default=[], item_type=str, doc="The user's saved sets of this app.")
    clone_of = param.String(default=None, allow_None=True, doc="The job being run again.")
    busy = param.Boolean(default=False, doc="A submit is on its way.")


class JobFormView(pn.viewable.Viewer):
    """The form card; ``on_submitted(job)`` is called with each job the service accepted."""

    state = param.ClassSelector(class_=FormState)
    submit = param.Event(label="Submit")
    save = param.Event(label="Save")
    load = param.Event(label="Load")
    set_name = param.String(default="", label="Save these values as")
    chosen_set = param.Selector(default=None, objects=[], allow_None=True, label="Saved values")

    def __init__(self, client: JobsClient, on_submitted: Callable[[dict], Awaitable[None]],
                 on_unavailable: Callable[[str], None], **params):
        super().__init__(state=FormState(), **params)
        self.client = client
        self._on_submitted, self._on_unavailable = on_submitted, on_unavailable
        self.fields: dict[str, FieldView] = {}
        self._check_task: Optional[asyncio.Task] = None
        self._checks = 0  # only the answer to the latest check is drawn
        self._body = pn.Column(sizing_mode="stretch_width")
        self._page = self._layout()

    def __panel__(self):
        return self._page

    def _layout(self):
        s = self.state
        sets = pn.Row(
            pn.widgets.Select.from_param(self.param.chosen_set, width=170),
            pn.widgets.Button.from_param(self.param.load, width=70, align="end",
                                         disabled=self.param.chosen_set.rx.is_(None)),
            pn.widgets.TextInput.from_param(self.param.set_name, width=170),
            pn.widgets.Button.from_param(self.param.save, width=70, align="end"),
            css_classes=["nh-sets"])
        return pn.Column(
            pn.pane.HTML(s.param.note, visible=s.param.note.rx.bool(), css_classes=["nh-form-note"],
                         styles=NOTE_STYLE, sizing_mode="stretch_width"),
            self._body,
            sets,
            pn.pane.HTML(s.param.quota, css_classes=["nh-quota"], sizing_mode="stretch_width"),
            pn.pane.HTML(s.param.general_error, visible=s.param.general_error.rx.bool(),
                         css_classes=["nh-form-error"], styles=ALERT_STYLE, sizing_mode="stretch_width"),
            pn.widgets.Button.from_param(self.param.submit, color="primary", width=140,
                                         disabled=s.param.busy),
            visible=s.param.app_id.rx.bool(), sizing_mode="stretch_width", css_classes=["nh-form"])

    # ---- opening an app ------------------------------------------------------------------------
    async def open_app(self, app: dict, values: Optional[dict] = None, *, note: str = "",
                       clone_of: Optional[str] = None) -> None:
        """Show ``app``'s form with ``values`` (None: the user's last values of it, if any)."""
        self._checks += 1  # a check of the previous app must not draw here
        self.fields = {f["name"]: FieldView(f, self._edited) for f in app["form"]}
        sections = []
        for group, title in GROUP_TITLES.items():
            members = [self.fields[f["name"]].block for f in app["form"] if f["group"] == group]
            if members:
                sections.append(pn.pane.HTML(f"<h3>{text.html(title)}</h3>", margin=(0, 10)))
                sections.extend(members)
        self._body.objects = sections
        saved = await self._saved_sets(app["id"])
        if values is None and LAST in saved:
            values, note = saved[LAST], text.paragraph("Your last values for {} are filled in.",
                                                       app["name"])
        self.state.param.update(app_id=app["id"], app_name=app["name"], errors={}, general_error="",
                                note=note, clone_of=clone_of, touched=[])
        self.fill(values or {})
        self._show(app["form"], {})
        await asyncio.gather(self.check(), self.refresh_quota())

    async def _saved_sets(self, app_id: str) -> dict:
        try:
            saved = await self.client.saved(app_id)
        except (ServiceUnavailable, ServiceRefused):
            saved = {}
        names = sorted(n for n in saved if n != LAST)
        self.param.chosen_set.objects = {"—": None, **{n: n for n in names}}
        self.chosen_set = None
        self.state.saved_names = names
        return saved

    def fill(self, values: dict) -> None:
        """Put ``values`` into their fields and count them as typed."""
        touched = list(self.state.touched)
        for name, value in values.items():
            view = self.fields.get(name)
            if view is not None:
                view.set_value(value)
                if name not in touched:
                    touched.append(name)
        self.state.touched = touched

    def values(self) -> dict[str, Any]:
        """What is sent: the touched fields' values."""
        out = {}
        for name in self.state.touched:
            view = self.fields.get(name)
            if view is not None:
                value = view.value()
                if value is not NO_VALUE:
                    out[name] = value
        return out

    # ---- live check --------------------------------------------------------------------------
    def _edited(self, name: str) -> None:
        if name not in self.state.touched:
            self.state.touched = self.state.touched + [name]
        if self._check_task is not None and not self._check_task.done():
            self._check_task.cancel()
        self._check_task = asyncio.ensure_future(self._check_later())

    async def _check_later(self) -> None:
        await asyncio.sleep(CHECK_PAUSE)
        await self.check()

    async def check(self) -> None:
        """Ask the service about the current values and draw its answer."""
        app_id = self.state.app_id
        if not app_id:
            return
        self._checks += 1
        mine = self._checks
        try:
            answer = await self.client.check(app_id, self.values())
        except ServiceUnavailable as e:
            self._on_unavailable(str(e))
            return
        except ServiceRefused as e:
            self.state.general_error = text.paragraph("{}", e)
            return
        if mine == self._checks and app_id == self.state.app_id:
            self._show(answer.get("form") or [], answer.get("errors") or {})

    def _show(self, form: list[dict], errors: dict[str, str]) -> None:
        touched, described = set(self.state.touched), set()
        for field in form:
            view = self.fields.get(field["name"])
            if view is not None:
                described.add(field["name"])
                view.show(field, touched=field["name"] in touched, error=errors.get(field["name"]))
        for name, view in self.fields.items():
            if name not in described:
                view.show_error(errors.get(name))
        others = {k: v for k, v in errors.items() if k not in self.fields}
        self.state.errors = dict(errors)
        self.state.general_error = "".join(text.paragraph("{}", m) for m in others.values())

    async def refresh_quota(self) -> None:
        try:
            quota = await self.client.quota()
        except (ServiceUnavailable, ServiceRefused):
            self.state.quota = ""
            return
        self.state.quota = quota_html(quota)

    # ---- submit and saved sets -----------------------------------------------------------------
    @param.depends("submit", watch=True)
    async def _submit(self) -> None:
        if self.state.busy or not self.state.app_id:
            return
        self.state.busy = True
        try:
            job = await self.client.submit(self.state.app_id, self.values(), self.state.clone_of)
        except ServiceUnavailable as e:
            self._on_unavailable(str(e))
            return
        except ServiceRefused as e:
            self._show(await self._current_form(), e.errors or {"form": str(e)})
            return
        finally:
            self.state.busy = False
        self.state.param.update(general_error="", clone_of=None,
                                note=text.html_format("<p>Job <code class='nh-submitted'>{}</code> "
                                                      "submitted: follow it under My jobs.</p>",
                                                      job.get("id", "")))
        await self._on_submitted(job)
        await self.refresh_quota()

    async def _current_form(self) -> list[dict]:
        try:
            return (await self.client.check(self.state.app_id, self.values())).get("form") or []
        except (ServiceUnavailable, ServiceRefused):
            return []

    @param.depends("save", watch=True)
    async def _save(self) -> None:
        name = self.set_name.strip()
        if not name or name == LAST:
            self.state.general_error = text.paragraph(
                "Give the values a name to save them under (not '{}').", LAST)
            return
        try:
            await self.client.save(self.state.app_id, name, self.values())
        except ServiceUnavailable as e:
            self._on_unavailable(str(e))
            return
        except ServiceRefused as e:
            self.state.general_error = text.paragraph("{}", " ".join(e.errors.values()) or e)
            return
        await self._saved_sets(self.state.app_id)
        self.chosen_set = name
        self.state.param.update(general_error="", note=text.paragraph("Saved as '{}'.", name))

    @param.depends("load", watch=True)
    async def _load(self) -> None:
        name = self.chosen_set
        if not name:
            return
        try:
            saved = await self.client.saved(self.state.app_id)
        except ServiceUnavailable as e:
            self._on_unavailable(str(e))
            return
        except ServiceRefused as e:
            self.state.general_error = text.paragraph("{}", e)
            return
        if name not in saved:
            self.state.general_error = text.paragraph("There is no saved set '{}' any more.", name)
            return
        self.state.touched = []
        self.fill(saved[name])
        self.state.note = text.paragraph("The values saved as '{}' are filled in.", name)
        await self.check()

    def close(self) -> None:
        if self._check_task is not None:
            self._check_task.cancel()


QUOTA_WORDS = {"jobs": "Jobs at once", "cores": "Cores", "vms": "Cloud VMs"}


def quota_html(quota: dict) -> str:
    """Used and free of each of the service's limits, then each backend's own quota."""
    parts = []
    for key, words in QUOTA_WORDS.items():
        q = (quota.get("service") or {}).get(key)
        if isinstance(q, dict):
            parts.append(text.html_format("{}: {} used, {} free (of {})", words,
                                          q.get("used"), q.get("free"), q.get("limit")))
    for backend, own in sorted((quota.get("backends") or {}).items()):
        if isinstance(own, dict) and own.get("error"):
            parts.append(text.html_format("{}: {}", backend, own["error"]))
        elif isinstance(own, dict):
            shown = ", ".join(f"{k} {v.get('used')}/{v.get('limit')}" if isinstance(v, dict) else f"{k} {v}"
                              for k, v in sorted(own.items()))
            parts.append(text.html_format("{}: {}", backend, shown))
    return f"<p><strong>Your quota</strong> · {' · '.join(parts)}</p>" if parts else ""
