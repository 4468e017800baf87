"""Text a student can influence, made safe for the place it is shown: the one helper for that.

File names, column names, titles, labels and messages quoting what was typed reach the screen
in three ways, each with its own hazard:

* **HTML panes** (status line, file summary, error area, list of derived columns and filters):
  markup would run (``<img onerror=...>`` in a column name, and Panel runs ``<script>`` tags it
  finds). Values are escaped into templates the app writes — :func:`html`, :func:`html_format`,
  :func:`paragraph`, :func:`link` — and shown in ``pn.pane.HTML``, which does not typeset math.
  Markdown panes are not used for such text: markdown-it passes raw HTML through, and Panel
  typesets ``$...$`` in them whatever ``disable_math`` says.
* **Bokeh canvas text** (titles, axis and colour-bar labels): Bokeh 3 typesets ``$$...$$``,
  ``\\[...\\]`` and ``\\(...\\)`` as TeX; :func:`canvas` breaks those delimiters with an invisible
  zero-width space so the text shows as typed. HoloViews also runs titles through
  ``str.format``: :func:`holoviews_title` doubles braces as well. (Widget labels, select options
  and hover-tooltip labels are set as text by Bokeh and need nothing.)
* **Notebook markdown cells**: :func:`markdown` escapes markup and math for JupyterLab.
"""
from __future__ import annotations

import html as _html
import re
import string
from urllib.parse import quote

_ZERO_WIDTH_SPACE = "\u200b"
_TEX_DELIMITER = re.compile(r"\$(?=\$)|\\(?=[\[\]()])")  # the first character of $$, \[, \], \(, \)
_DOUBLED_BRACE = re.compile(r"\{\{|\}\}")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$])")  # < > & are HTML-escaped


def html(value) -> str:
    """``value`` as HTML text: markup shows as typed, nothing runs (also safe inside a quoted attribute)."""
    return _html.escape(str(value), quote=True)


class _EscapingFormatter(string.Formatter):
    def format_field(self, value, format_spec):
        return html(super().format_field(value, format_spec))


def html_format(template: str, *args, **kwargs) -> str:
    """``template.format(...)`` where the template is the app's own HTML and every field is escaped."""
    return _EscapingFormatter().format(template, *args, **kwargs)


def paragraph(template: str, *args, **kwargs) -> str:
    """One ``<p>`` of :func:`html_format` text (HTML panes show paragraphs, tests find them by ``p``)."""
    return f"<p>{html_format(template, *args, **kwargs)}</p>"


def link(label, relative_url: str) -> str:
    """A link opening in a new tab; the URL is percent-encoded, so it stays a relative path."""
    href = _html.escape(quote(str(relative_url), safe="/."), quote=True)
    return f'<a href="{href}" target="_blank" rel="noopener">{html(label)}</a>'


def canvas(value) -> str:
    """``value`` for Bokeh canvas text: TeX delimiters broken by a zero-width space, shown as typed."""
    return _TEX_DELIMITER.sub(lambda m: m.group(0) + _ZERO_WIDTH_SPACE, str(value))


def format_literal(value) -> str:
    """``value`` for an API that runs it through ``str.format`` (HoloViews titles): braces doubled."""
    return str(value).replace("{", "{{").replace("}", "}}")


def holoviews_title(value) -> str:
    """A title for HoloViews/hvPlot: shown on the canvas as typed, never formatted."""
    return format_literal(canvas(value))


def shown_title(holoviews_text: str) -> str:
    """The canvas text HoloViews shows for a :func:`holoviews_title` (its doubled braces undone).

    For views drawn with Bokeh directly, so their titles match the HoloViews ones.
    """
    return _DOUBLED_BRACE.sub(lambda m: m.group(0)[0], str(holoviews_text))


def markdown(value) -> str:
    """``value`` as literal text in a Markdown cell: markup, math and line breaks neutralised."""
    one_line = " ".join(str(value).splitlines())
    return html(_MARKDOWN_SPECIAL.sub(r"\\\1", one_line))
