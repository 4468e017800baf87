"""The app catalogue: every app the jobs service offers, by category, with its icon and description.

An emoji icon is shown as text; an icon file is fetched by the page's server from the service
and shown as a ``data:`` image (an ``<img>`` runs no script, even from an SVG). Choosing an app
opens its form.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Optional

import panel as pn
import param

from . import text
from .client import JobsClient

CARD_STYLE = {"border": "1px solid #dee2e6", "border-radius": "6px", "padding": "0 6px"}


class Catalogue(pn.viewable.Viewer):
    """The apps; ``on_choose(app)`` is called when one is chosen."""

    apps = param.List(default=[], doc="The apps as the service lists them.")
    chosen = param.String(default="", doc="Id of the chosen app.")

    def __init__(self, client: JobsClient, on_choose: Callable[[dict], Awaitable[None]], **params):
        super().__init__(**params)
        self.client, self._on_choose = client, on_choose
        self.icons: dict[str, Optional[str]] = {}
        self._column = pn.Column(sizing_mode="stretch_width", css_classes=["nh-catalogue"], margin=0)

    def __panel__(self):
        return self._column

    async def load(self) -> None:
        """Read the apps (and their icon files) from the service."""
        apps = await self.client.apps()
        files = [a["id"] for a in apps if not a.get("icon")]
        found = await asyncio.gather(*(self.client.icon(i) for i in files))
        self.icons = dict(zip(files, found, strict=True))
        self.apps = apps

    def app(self, app_id: str) -> Optional[dict]:
        return next((a for a in self.apps if a["id"] == app_id), None)

    @param.depends("apps", watch=True)
    def _draw(self) -> None:
        by_category: dict[str, list[dict]] = {}
        for app in self.apps:
            by_category.setdefault(app.get("category") or "Other", []).append(app)
        items = []
        for category in sorted(by_category):
            items.append(pn.pane.HTML(text.html_format("<h4 style='margin:4px 0'>{}</h4>", category),
                                      margin=(0, 5)))
            items.extend(self._card(app) for app in by_category[category])
        if not items:
            items = [pn.pane.HTML("<p>The jobs service offers no apps yet.</p>")]
        self._column.objects = items

    def _card(self, app: dict):
        if app.get("icon"):
            icon = text.html_format("<span style='font-size:30px;line-height:40px'>{}</span>",
                                    app["icon"])
        elif self.icons.get(app["id"]):
            icon = f'<img src="{text.html(self.icons[app["id"]])}" width="40" height="40" alt="">'
        else:
            icon = ""
        button = pn.widgets.Button(label=app["name"], color="primary", variant="outline",
                                   sizing_mode="stretch_width")

        async def clicked(event, app=app):
            await self.choose(app)
        button.on_click(clicked)
        return pn.Row(
            pn.pane.HTML(icon, width=48, margin=(8, 4)),
            pn.Column(button,
                      pn.pane.HTML(text.paragraph("{}", app.get("description") or ""),
                                   sizing_mode="stretch_width", margin=(0, 10),
                                   styles={"font-size": "90%", "color": "#444"}),
                      sizing_mode="stretch_width", margin=0),
            css_classes=["nh-app", f"nh-app-{_css_name(app['id'])}"], styles=CARD_STYLE,
            sizing_mode="stretch_width", margin=(3, 0))

    async def choose(self, app: dict) -> None:
        self.chosen = app["id"]
        await self._on_choose(app)


def _css_name(app_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(app_id))
