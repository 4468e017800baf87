"""Text on the Jobs page: every string that came from a user, a job or the service is escaped here.

Parameter values, job reasons, log lines, file names and error sentences that quote what was
typed all reach HTML panes (and Panel runs ``<script>`` it finds in them) or notifications (Notyf
sets its message as HTML). The page writes its own small templates and passes every such value
through :func:`html_format` (the plot app's, :mod:`panel_apps.text`), so ``<img src=x
onerror=...>`` shows as typed and nothing runs.
Widget labels and select options are set as text by Bokeh and need nothing.
"""
from __future__ import annotations

from urllib.parse import quote

from jobforms.states import JobState
from panel_apps.text import html, html_format, paragraph  # one escaping for every NebulaHub page

__all__ = ["BADGE_COLOURS", "badge", "html", "html_format", "link", "paragraph", "shown_value", "url_path"]


def url_path(*parts: str) -> str:
    """Path segments percent-encoded and joined with ``/`` (a file name cannot leave its folder
    or start a query)."""
    return "/".join(quote(str(p), safe="") for p in parts)


def link(label, href: str, css_class: str = "", new_tab: bool = True) -> str:
    """A link; ``href`` must be a URL the page built itself (it is attribute-escaped, not checked)."""
    target = ' target="_blank" rel="noopener"' if new_tab else ""
    cls = f' class="{html(css_class)}"' if css_class else ""
    return f'<a href="{html(href)}"{cls}{target}>{html(label)}</a>'


BADGE_COLOURS = {
    JobState.PENDING: ("#6c757d", "#fff"), JobState.BOOTING: ("#0d6efd", "#fff"),
    JobState.BOOTSTRAPPING: ("#6610f2", "#fff"), JobState.EXECUTING: ("#fd7e14", "#fff"),
    JobState.TERMINATING: ("#20c997", "#fff"), JobState.DONE: ("#198754", "#fff"),
    JobState.FAILED: ("#dc3545", "#fff"), JobState.CANCELLED: ("#adb5bd", "#212529"),
}


def badge(state: str) -> str:
    """The coloured state badge of a job (an unknown state is shown grey, as text)."""
    try:
        background, colour = BADGE_COLOURS[JobState(state)]
    except ValueError:
        background, colour = "#6c757d", "#fff"
    return (f'<span class="nh-badge nh-badge-{html(state)}" style="background:{background};'
            f'color:{colour};border-radius:10px;padding:1px 9px;font-size:90%">{html(state)}</span>')


def shown_value(value) -> str:
    """A parameter value as a person reads it: 20 rather than 20.0, lists joined by commas."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(shown_value(v) for v in value)
    return "" if value is None else str(value)
