"""Take a plot out of the app: a PNG of the current view, or a notebook that reproduces it.

The PNG is rendered on the server from the data (Datashader for scatter/line/2-D histogram, bars
for histograms), so it needs no browser and has exactly the plot's width x height in pixels.
The notebook is plain hvPlot/pandas code a student can read and grow from; it reads the original
file, applies the same renames, derived columns (numpy code generated from the checked formula)
and filters, then makes the same plot: its last cell is the settings of
:func:`panel_apps.settings.plot_settings` (what the app drew from) written out with ``repr()``.
"""
from __future__ import annotations

import io
import json
import re
from datetime import datetime
from functools import partial
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
from PIL import Image, ImageColor, ImageDraw

from . import expressions, text
from .png_figure import Axis, ColourBar, draw_figure
from .render import aggregate, colour_ramp, column_range, shade_image
from .settings import hvplot_keywords, plot_settings
from .spec import FileColumns, check_reader


def view_png(frame: pd.DataFrame | None, settings: dict, x_range=None, y_range=None, aggregator=aggregate) -> bytes:
    """PNG bytes of the finished figure, the plot's width x height pixels, showing the given (or full) ranges.

    White background, framed plot area with ticks and their values, axis labels, the title and, for
    rasterized views and 2-D histograms, a colour bar (:mod:`panel_apps.png_figure`). ``settings``
    are those of a histogram or of a rasterized view: the picture is always drawn on the server
    from all rows (``plot_settings(spec, RASTERIZED)`` for a scatter or line plot), by
    ``aggregator`` (the Dask cluster's, for a plot drawn there: then ``frame`` may be None).
    """
    opts = settings["options"]
    words = dict(title=text.shown_title(opts["title"]), xlabel=opts["xlabel"], ylabel=opts["ylabel"])
    if settings["method"] == "hist":
        img = _histogram_figure(frame, settings, x_range, words)
    else:
        x_range = x_range or column_range(frame, settings["x"], opts["logx"])
        y_range = y_range or column_range(frame, settings["y"], opts["logy"])

        def picture(width: int, height: int):
            size = (settings["bins"], settings["bins"]) if settings["bins"] else (width, height)
            agg = aggregator(frame, settings, x_range, y_range, *size)
            return shade_image(agg.image, settings).resize((width, height), Image.NEAREST), agg.image

        bar = ColourBar(opts.get("clabel") or "", partial(colour_ramp, settings)) if opts.get("colorbar") else None
        img = draw_figure(opts["width"], opts["height"], Axis(*x_range, opts["logx"]), Axis(*y_range, opts["logy"]),
                          picture, colour_bar=bar, **words)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _histogram_figure(frame: pd.DataFrame, settings: dict, x_range, words: dict) -> Image.Image:
    """Bars of the counts over ``x_range`` (default: all values), on axes; log y counts from 1."""
    opts, bins = settings["options"], settings["bins"]
    values = frame[settings["x"]].to_numpy()
    values = values[np.isfinite(values) & ((values > 0) if opts["logx"] else True)]
    lo, hi = x_range or ((float(values.min()), float(values.max())) if values.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 1e-6
    edges = np.geomspace(lo, hi, bins + 1) if opts["logx"] and lo > 0 else np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    top = max(1, int(counts.max(initial=0)))
    x = Axis(float(edges[0]), float(edges[-1]), bool(opts["logx"] and lo > 0))
    y = Axis(0.8, top * 1.5, True) if opts["logy"] else Axis(0.0, top * 1.05)
    r, g, b = ImageColor.getrgb(opts["color"])[:3]
    a = float(opts.get("alpha", 1.0))
    fill = tuple(int(round(c * a + 255 * (1 - a))) for c in (r, g, b))

    def picture(width: int, height: int):
        img = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(img)
        for left, right, count in zip(edges[:-1], edges[1:], counts):
            if count <= 0:
                continue
            x0, x1 = (round(x.fraction(e) * (width - 1)) for e in (left, right))
            y1 = height - 1 - round(min(1.0, y.fraction(count)) * (height - 1))
            draw.rectangle([x0, y1, max(x0, x1 - 1), height - 1], fill=fill)
        return img, None

    return draw_figure(opts["width"], opts["height"], x, y, picture, **words)


def notebook_source(spec, data_path: Path, fmt: str, options: dict, columns: list[str],
                    mode: str = "standard", numeric: list[str] | None = None) -> list[tuple[str, str]]:
    """The notebook as a list of (cell type, source) pairs; ``mode`` is the mode the app drew in.

    ``columns`` are the file's columns, ``numeric`` those holding numbers (default: all). The spec
    and reader options are checked with the app's rules first; every value the student chose then
    enters the code through ``repr()`` (or, for formulas, is rebuilt from the checked tree), and
    no comment quotes what they typed, so no input can end a string or a line of code.
    """
    file_columns = FileColumns(tuple(columns), tuple(columns if numeric is None else numeric))
    spec.check(file_columns)
    check_reader(options)
    cells = [("markdown", f"# {text.markdown(spec.title or 'Plot of ' + Path(data_path).name)}\n\n"
              f"Made with the NebulaHub plot app on {datetime.now():%Y-%m-%d %H:%M}. Run all cells to "
              "reproduce the plot; edit the code to go further.")]
    # Bokeh's JavaScript goes into the notebook, so it renders offline; before hvplot's import, which
    # would otherwise load it from a CDN first (and then inline=True no longer inlines it)
    cells.append(("code", "import numpy as np\nimport pandas as pd\nimport holoviews as hv\n"
                          "hv.extension('bokeh', inline=True)  # Bokeh's JavaScript in the notebook: it renders offline\n"
                          "import hvplot.pandas  # noqa: F401"))
    cells.append(("code", _load_code(Path(data_path), fmt, options)))
    renames = {k: v for k, v in spec.rename.items() if v and v != k}
    if renames:
        cells.append(("code", f"df = df.rename(columns={renames!r})"))
    available = [renames.get(c, c) for c in columns]
    for name, formula in spec.derived.items():
        cells.append(("code", f"df[{name!r}] = {expressions.to_numpy_source(formula, available)}"))
        available.append(name)
    if spec.filters:
        parts = []
        for f in spec.filters:
            if f.get("min") is not None:
                parts.append(f"(df[{f['column']!r}] >= {f['min']!r})")
            if f.get("max") is not None:
                parts.append(f"(df[{f['column']!r}] <= {f['max']!r})")
        if parts:
            cells.append(("code", "df = df[" + " & ".join(parts) + "]"))
    cells.append(("code", plot_code(plot_settings(spec, mode))))
    return cells


def _load_code(path: Path, fmt: str, options: dict) -> str:
    if fmt == "text":
        sep = r"\s+" if options.get("delimiter") is None else options["delimiter"]
        args = [repr(str(path)), f"sep={sep!r}", f"header={0 if options.get('header') else None!r}"]
        if options.get("comment"):
            args.append(f"comment={options['comment']!r}")
        if options.get("skiprows"):
            args.append(f"skiprows={int(options['skiprows'])!r}")
        if options.get("names"):
            args.append(f"names={[str(n) for n in options['names']]!r}")
        if options.get("skip_bad_lines") is True:
            args.append("on_bad_lines='skip'")
        return "df = pd.read_csv(" + ", ".join(args) + ")\ndf.head()"
    if fmt == "parquet":
        return f"df = pd.read_parquet({str(path)!r})\ndf.head()"
    if fmt == "hdf5":
        return ("from panel_apps.loaders import read_hdf5  # pandas stores, 1-D datasets or 2-D arrays\n"
                f"df = read_hdf5({str(path)!r}, {str(options['dataset'])!r}, None)\ndf.head()")
    return (f"import uproot\ntree = uproot.open({str(path)!r})[{str(options['tree'])!r}]\n"
            "df = tree.arrays(library='pd')\ndf.head()")


def plot_code(settings: dict) -> str:
    """The code drawing the plot ``settings`` describe, every value written with ``repr()``.

    Scatter and line plots are the very ``hvplot.<method>(...)`` call the app makes; histograms
    pass the app's options to ``hvplot.hist``; 2-D histograms count with ``np.histogram2d`` and
    show a ``hv.QuadMesh`` with the app's options. One translation is needed: hvPlot's
    ``rasterize`` bins log axes linearly (holoviews#2195), so a rasterized log axis is written as
    the log10 of the column on a linear axis, labelled ``log10(<label>)``: the same bins as the
    app's log-space aggregation.
    """
    df, x, y, opts = "df", settings["x"], settings["y"], settings["options"]
    if settings["method"] == "hist":
        bin_range = (f", bin_range=({df}[{x!r}][{df}[{x!r}] > 0].min(), {df}[{x!r}].max())"
                     if opts["logx"] else "")  # the app's log bins span the values above zero
        return f"{df}.hvplot.hist({x!r}, bins={settings['bins']!r}{bin_range}, {_kw(opts)})"
    if settings["method"] == "hist2d":
        def edges(column: str, log: bool) -> str:
            if log:
                return (f"np.geomspace({df}[{column!r}][{df}[{column!r}] > 0].min(), {df}[{column!r}].max(), "
                        f"{settings['bins'] + 1!r})")
            return f"np.linspace({df}[{column!r}].min(), {df}[{column!r}].max(), {settings['bins'] + 1!r})"
        return (f"counts, xe, ye = np.histogram2d({df}[{x!r}], {df}[{y!r}], "
                f"bins=[{edges(x, opts['logx'])}, {edges(y, opts['logy'])}])\n"
                f"hv.QuadMesh((xe, ye, np.where(counts.T > 0, counts.T, np.nan)), [{x!r}, {y!r}], 'rows')"
                f".opts({_kw(opts)})")
    keywords, lines = hvplot_keywords(settings), []
    if settings["rasterize"]:
        for axis in ("x", "y"):
            column = keywords[axis]
            if keywords[f"log{axis}"]:
                logged = f"log10({column})"
                lines.append(f"{df}[{logged!r}] = np.log10({df}[{column!r}].where({df}[{column!r}] > 0))")
                keywords.update({axis: logged, f"log{axis}": False,
                                 f"{axis}label": f"log10({keywords[f'{axis}label']})"})
    lines.append(f"{df}.hvplot.{settings['method']}({_kw(keywords)})")
    return "\n".join(lines)


def _kw(keywords: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in keywords.items())


def write_notebook(spec, data_path: Path, fmt: str, options: dict, columns: list[str], home: Path,
                   mode: str, numeric: list[str] | None = None) -> Path:
    """Write the reproducing notebook under ``home/nebulahub-plots/`` (never overwriting); returns its path."""
    cells = notebook_source(spec, data_path, fmt, options, columns, mode, numeric)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["nebulahub"] = {"plot_spec": json.loads(spec.to_json())}
    folder = Path(home) / "nebulahub-plots"
    folder.mkdir(parents=True, exist_ok=True)
    # a plain file name: it also ends up in a link in the app and in JupyterLab's file browser
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(data_path).stem}-{spec.kind}").strip("._") or "plot"
    target = folder / f"{stem}.ipynb"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{stem}-{n}.ipynb"
    nbformat.write(nb, target)
    return target
