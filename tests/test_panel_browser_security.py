"""A data file whose name and column names carry markup runs no script in the student's browser.

Through the hub, in real Chromium, the student previews such a file, plots it (hovering over the
plot), provokes errors that quote what they typed, adds a filter, downloads the PNG and opens the
notebook. Every payload would set ``window.__xss_N`` if it ran: none may be set, and each text
must show exactly as typed. A control payload inserted by the test itself shows that such
payloads do fire in this browser within the test's time.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from tests.test_panel_browser import (  # noqa: F401  the hub, the student's browser session and page
    THRESHOLD, _open, app_url, browser, home, hub, hub_dir, login_state, new_student_page, page)

pytestmark = pytest.mark.browser


def payload(n: int) -> str:
    return f"<img src=x onerror=window.__xss_{n}=1>"


FILE_NAME = f"run{payload(1)}.csv"
Y = f"q{payload(2)}"
SCRIPT_COLUMN = "<script>window.__xss_3=1</script>"
TEX_COLUMN = "$$\\alpha$$ <svg onload=window.__xss_4=1>"  # coloured by: the colour bar's title
MARKDOWN_COLUMN = "{label} **b** [a](javascript:window.__xss_5=1)"
NOTE = payload(6)  # the value of a text cell
TITLE = f"{payload(7)} $$x^2$$ {{label}}"
NAME_TYPED = payload(8)  # a derived column name: refused, and quoted in the error
PATH_TYPED = f"{payload(9)}/../x.txt"  # a path: refused, and quoted in the error
ROWS = THRESHOLD + 500  # rasterized: the hover tooltip covers every pixel of the plot

CANVAS_TEXTS_JS = """() => Array.from(Bokeh.documents[0].all_models).flatMap(m =>
    m.type === 'Title' ? [m.text] : m.type === 'LinearAxis' ? [m.axis_label]
    : m.type === 'ColorBar' ? [m.title] : []).filter(t => t)"""


@pytest.fixture(scope="module")
def markup_file(home):
    """The file, in the student's home before their server starts."""
    header = ["t", Y, SCRIPT_COLUMN, TEX_COLUMN, MARKDOWN_COLUMN, "note"]
    rows = [f"{i * 0.01:.2f},{math.sin(i / 50):.5f},{i % 7},{i % 11},{i % 5},{NOTE}" for i in range(ROWS)]
    (home / FILE_NAME).write_text("\n".join([",".join(header), *rows]) + "\n")
    return FILE_NAME


def test_markup_in_a_data_file_and_in_what_the_student_types_runs_no_script(markup_file, page, home):
    from PIL import Image
    from playwright.sync_api import expect

    # preview and plot: file name, column names and a text cell, shown as they are
    _open(page, markup_file)
    preview = page.locator(".nh-preview table")
    for shown in (Y, SCRIPT_COLUMN, TEX_COLUMN, MARKDOWN_COLUMN, NOTE):
        expect(preview).to_contain_text(shown)
    expect(page.locator(".nh-types p")).to_contain_text(f"{Y} float64")
    expect(page.locator(".nh-types p")).to_contain_text(f"{TEX_COLUMN} int64")
    expect(page.get_by_role("textbox", name=SCRIPT_COLUMN, exact=True)).to_have_value(SCRIPT_COLUMN)  # rename field
    expect(page.locator(".nh-status p")).to_have_text(f"Plotted scatter of {FILE_NAME}.")
    expect(page.locator(".nh-mode p")).to_contain_text(f"Rasterized (Datashader, {ROWS:,} rows)")
    assert payloads_that_ran(page) == []

    # axis labels, title and colour bar title on the canvas, as typed (never typeset as TeX)
    page.get_by_role("combobox", name="Colour by").select_option(TEX_COLUMN)
    page.get_by_role("textbox", name="Title").fill(TITLE)
    page.get_by_role("textbox", name="Title").press("Enter")
    page.wait_for_function(f"() => ({CANVAS_TEXTS_JS})().some(t => t.replaceAll('\\u200b', '') === {json.dumps(TITLE)})")
    texts = [t.replace("\u200b", "") for t in page.evaluate(CANVAS_TEXTS_JS)]
    assert {"t", Y, TEX_COLUMN, TITLE} <= set(texts), texts
    assert not any("$$" in t for t in page.evaluate(CANVAS_TEXTS_JS))  # what Bokeh would typeset as TeX

    # hover: the tooltip names the axes exactly as the columns are named
    plot = page.locator(".nh-plot canvas").first
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    tooltip = page.locator(".bk-tooltip-row-label")
    expect(tooltip.filter(has_text=Y)).to_have_count(1)
    expect(tooltip.filter(has_text=f"mean {TEX_COLUMN}")).to_have_count(1)

    # errors that quote what was typed
    page.get_by_text("Derived columns and filters").click()
    page.get_by_role("textbox", name="New column name").fill(NAME_TYPED)
    page.get_by_role("textbox", name="Formula").fill("t * 2")
    page.get_by_role("button", name="Add column").click()
    expect(page.locator(".nh-field-error")).to_contain_text(f"New column name '{NAME_TYPED}' is not allowed")
    path_box = page.get_by_role("textbox", name="…or type a path inside the folder")
    path_box.fill(PATH_TYPED)
    path_box.press("Enter")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".nh-error")).to_contain_text(f"'{PATH_TYPED}' uses '..'")

    # the list of filters
    page.get_by_role("combobox", name="Filter column").select_option(Y)
    page.get_by_role("textbox", name="min").fill("-0.5")
    page.get_by_role("button", name="Add filter").click()
    expect(page.locator(".nh-extras")).to_contain_text(f"{Y} in [-0.5, ∞]")
    expect(page.locator(".nh-error")).to_be_hidden()

    # export: the PNG, and the notebook with its link in the status line
    with page.expect_download() as info:
        page.get_by_role("button", name="Download PNG").click()
    Image.open(io.BytesIO(Path(info.value.path()).read_bytes())).verify()
    page.get_by_role("button", name="Open as notebook").click()
    expect(page.locator(".nh-status p")).to_contain_text("Notebook written to ~/nebulahub-plots/")
    href = page.locator(".nh-status a").get_attribute("href")
    assert href.startswith("../lab/tree/nebulahub-plots/") and "<" not in href and " " not in href, href
    notebook = json.loads((home / href.removeprefix("../lab/tree/")).read_text())
    title_cell = "".join(notebook["cells"][0]["source"])
    assert "<img" not in title_cell and "&lt;img src=x onerror=" in title_cell and "\\$\\$x^2\\$\\$" in title_cell

    # nothing ran, although such a payload does run here when it reaches the page as markup
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=x onerror=window.__xss_control=1>')")
    page.wait_for_function("() => window.__xss_control === 1")
    assert payloads_that_ran(page) == []


def payloads_that_ran(page) -> list[str]:
    return page.evaluate("() => Object.keys(window).filter(k => k.startsWith('__xss_') && k !== '__xss_control')")
