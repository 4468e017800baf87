"""The plot app's page as a student meets it, for tests: fields by label, buttons by name, panes by
CSS class — what the browser tests find with ``get_by_role`` and ``.nh-*`` selectors, on the server."""
from __future__ import annotations

import html
import re

import panel as pn


def widget(app, label: str, kind=pn.widgets.Widget):
    """The one widget of ``kind`` labelled ``label`` on the app's page."""
    found = [w for w in app.__panel__().select(kind) if w.name == label]
    assert len(found) == 1, f"{len(found)} widgets labelled {label!r} on the page"
    return found[0]


def type_in(app, label: str, value) -> None:
    """Type ``value`` into the field labelled ``label`` (or pick it in that selector)."""
    widget(app, label).value = value


def click(app, label: str) -> None:
    """Press the button labelled ``label`` (what a click in the browser does on the server)."""
    widget(app, label, pn.widgets.Button).param.trigger("value")


def pane(app, css_class: str):
    """The one pane (or layout) carrying ``css_class`` on the app's page."""
    found = app.__panel__().select(lambda obj: css_class in getattr(obj, "css_classes", []))
    assert len(found) == 1, f"{len(found)} panes with class {css_class!r} on the page"
    return found[0]


def error_text(app) -> str:
    """The sentence in the red error area, or beside the formula and filter fields when one of
    those caused it, as the student reads it ('' when no error is shown)."""
    shown = pane(app, "nh-error")
    assert shown.visible == bool(app.error), "the error area is shown exactly when there is an error"
    beside = pane(app, "nh-field-error")
    assert beside.visible == bool(app.extras.error), "the field error is shown exactly when there is one"
    return html.unescape(re.sub(r"<[^>]+>", "", app.error + app.extras.error))


def field_error_text(app) -> str:
    """Only the sentence shown beside the formula and filter fields."""
    return html.unescape(re.sub(r"<[^>]+>", "", app.extras.error))
