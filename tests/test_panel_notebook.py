"""'Open as notebook' writes code that does what the app did, and nothing else, whatever was typed.

Hypothesis builds configurations from everything a student (or a hand-edited saved configuration)
can put in: renames to names like ``e``, ``pi``, ``np`` or ``df``, derived columns from a small
formula grammar, filters, and titles and labels full of quotes, newlines, backslashes and ``#``.
Every generated code cell must parse, contain only the statement kinds the exporter writes, and,
run on the data file, give the very numbers the app plots.
"""
from __future__ import annotations

import ast
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panel_apps.dataset import DataSource
from panel_apps.export import notebook_source
from panel_apps.expressions import FormulaError
from panel_apps.spec import KINDS, PlotSpec

FILE_COLUMNS = ["t", "q1", "q2", "e", "label"]  # 'e' is a column here, not Euler's number
NUMERIC = ["t", "q1", "q2", "e"]
NEW_NAMES = ["t", "q1", "q2", "e", "pi", "np", "df", "x", "charge", "_k"]
DERIVED_NAMES = ["r", "s", "pi", "np", "df", "e", "pd", "hv", "x"]
NASTY_TEXT = st.lists(st.sampled_from(list("ab '\"\\\n\r#{}$<>&%;()\x00") + ['"""', "'''", "\\n", "$$x$$"]),
                      max_size=12).map("".join)
ALLOWED_NAMES = {"np", "pd", "hv", "df", "counts", "xe", "ye"}
ALLOWED_IMPORTS = {"numpy", "pandas", "holoviews", "hvplot.pandas"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small CSV file with zeros, negatives and a gap, converted once like the app does."""
    folder = tmp_path_factory.mktemp("nb")
    path = folder / "run.csv"
    rows = ["t,q1,q2,e,label"]
    for i in range(40):
        q2 = "" if i == 7 else f"{(i % 5) - 2}"
        rows.append(f"{i * 0.25},{np.sin(i) * 3:.6f},{q2},{(i % 3) * 1.5},word{i}")
    path.write_text("\n".join(rows) + "\n")
    source = DataSource(path)
    assert list(source.preview.frame.columns) == FILE_COLUMNS and source.numeric_columns == NUMERIC
    source.prepare(folder / "cache")
    return path, source


def formulas(names: list[str]):
    """A small formula grammar over ``names`` (columns), numbers and the constants e and pi."""
    leaves = st.sampled_from(names) | st.sampled_from(["0.5", "2", "3", "1e3", "e", "pi"])
    return st.recursive(leaves, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["sqrt", "abs", "log1p", "exp"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
        inner.map(lambda a: f"({a}) ** 2"),
        st.tuples(inner, inner).map(lambda t: f"where({t[0]} > {t[1]}, {t[0]}, {t[1]})"),
    ), max_leaves=6)


@st.composite
def configurations(draw):
    finals = draw(st.lists(st.sampled_from(NEW_NAMES), min_size=len(NUMERIC), max_size=len(NUMERIC), unique=True))
    rename = {old: new for old, new in zip(NUMERIC, finals) if old != new}
    available = list(finals)
    derived = {}
    for name in draw(st.lists(st.sampled_from([n for n in DERIVED_NAMES if n not in finals]), max_size=3,
                              unique=True)):
        derived[name] = draw(formulas(available))
        available.append(name)
    filters = [{"column": draw(st.sampled_from(available)),
                "min": draw(st.none() | st.sampled_from([-1.0, 0, 0.5, 2])),
                "max": draw(st.none() | st.sampled_from([1.0, 3, 100.0]))}
               for _ in range(draw(st.integers(0, 2)))]
    spec = PlotSpec(kind=draw(st.sampled_from(KINDS)), title=draw(NASTY_TEXT), xlabel=draw(NASTY_TEXT),
                    ylabel=draw(NASTY_TEXT), logx=draw(st.booleans()), logy=draw(st.booleans()))
    spec.set_columns(available)
    spec.param.update(rename=rename, derived=derived, filters=filters, x=draw(st.sampled_from(available)),
                      y=draw(st.sampled_from(available)),
                      color_by=draw(st.sampled_from([""] + available)))
    return spec, draw(st.sampled_from(["standard", "rasterized"]))


def assert_only_expected_statements(code: str) -> None:
    """Imports of the plotting stack, assignments to df (or the 2-D histogram), calls: nothing else."""
    tree = ast.parse(code)
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            assert {a.name for a in stmt.names} <= ALLOWED_IMPORTS, ast.unparse(stmt)
        elif isinstance(stmt, ast.Assign):
            assert len(stmt.targets) == 1, ast.unparse(stmt)
            target = stmt.targets[0]
            ok = (isinstance(target, ast.Name) and target.id == "df"
                  or isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                  and target.value.id == "df" and isinstance(target.slice, ast.Constant)
                  or isinstance(target, ast.Tuple) and [getattr(e, "id", None) for e in target.elts] == ["counts", "xe", "ye"])
            assert ok, ast.unparse(stmt)
        elif isinstance(stmt, ast.Expr):
            assert isinstance(stmt.value, ast.Call), ast.unparse(stmt)
        else:
            raise AssertionError(f"unexpected statement: {ast.unparse(stmt)}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            assert node.id in ALLOWED_NAMES, node.id
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("_"), node.attr


def _known_bug_case() -> tuple[PlotSpec, str]:
    """A column renamed to 'pi' and the file's column 'e': the app reads both columns."""
    spec = PlotSpec(kind="scatter", title='say """hi"""\n# import os', xlabel="a\\", ylabel="'")
    spec.set_columns(["t", "pi", "q2", "e", "r"])
    spec.param.update(rename={"q1": "pi"}, derived={"r": "e * pi + 1"}, x="t", y="r",
                      filters=[{"column": "r", "min": 0.5, "max": None}])
    return spec, "standard"


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(configurations())
def test_the_notebook_reproduces_the_apps_numbers_and_runs_nothing_else(data, config):
    check_notebook(data, *config)


def test_columns_named_like_constants_are_columns_in_the_notebook_too(data):
    check_notebook(data, *_known_bug_case())


def check_notebook(data, spec: PlotSpec, mode: str) -> None:
    path, source = data
    saved = PlotSpec.from_json(spec.to_json())  # what a saved configuration would bring back
    cells = notebook_source(saved, path, "text", source.options, FILE_COLUMNS, mode,
                            numeric=NUMERIC)
    code = [src for kind, src in cells if kind == "code"]
    for src in code:
        assert_only_expected_statements(src)
    namespace: dict = {}
    for src in code[:-1]:  # everything but the plotting cell
        exec(compile(src, "<notebook>", "exec"), namespace)
    notebook_df = namespace["df"]
    try:
        expected = source.table(saved)
    except FormulaError as exc:  # e.g. exp(1e3) ** 2: the app refuses with a sentence, nothing to compare
        assert "too large" in str(exc) or "divides by zero" in str(exc), exc
        return
    assert len(notebook_df) == len(expected)
    for column in saved.used_columns():
        np.testing.assert_allclose(np.asarray(notebook_df[column], dtype=float),
                                   np.asarray(expected[column], dtype=float), equal_nan=True,
                                   err_msg=f"{column} of {json.dumps(saved.to_dict())}")


def test_the_notebook_opens_in_a_new_tab_and_its_plot_renders_with_the_network_blocked(tmp_path):
    """'Open as notebook' links the notebook for a new tab; run, its rasterized plot draws in Chromium
    with every request off this machine refused: Bokeh's JavaScript is inside the notebook."""
    import asyncio
    import re

    import nbclient
    import nbformat
    from nbconvert import HTMLExporter

    from panel_apps.app import PlotApp
    from panel_apps.config import PlotAppConfig
    from panel_apps.sample_data import main as sample_data
    from tests.browser import chromium_page
    from tests.panel_page import click, type_in

    sample_data(["--out", str(tmp_path / "run.txt"), "--rows", "3000"])
    app = PlotApp(PlotAppConfig(home=str(tmp_path), data_roots=[], rasterize_threshold=1000))
    type_in(app, "…or type a path inside the folder", "run.txt")
    click(app, "Preview")
    asyncio.run(app.load())
    app.write_notebook()
    link = re.search(r'<a href="\.\./lab/tree/([^"]+)" target="_blank" rel="noopener">', app.status)
    assert link, app.status  # opens JupyterLab in a new tab; the app stays in its own
    nb = nbformat.read(tmp_path / link.group(1), as_version=4)
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    (tmp_path / "notebook.html").write_text(HTMLExporter().from_notebook_node(nb)[0])

    refused = []

    def only_this_machine(route):
        if re.match(r"(file|data|blob|about):|https?://(127\.0\.0\.1|localhost|\[::1\])[:/]", route.request.url):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with chromium_page() as page:
        page.context.route("**/*", only_this_machine)
        page.goto((tmp_path / "notebook.html").as_uri())
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.some(d => Array.from(d.all_models)"
                               ".some(m => m.type === 'Image'))", timeout=60_000)
        canvas = page.locator(".bk-Canvas canvas, canvas").first
        canvas.wait_for(state="visible", timeout=30_000)
        assert canvas.bounding_box()["width"] > 100
    assert refused  # the page did reach out (the HTML page's own scripts): nothing came back, the plot drew
