"""Take a plot out of the app: a PNG of the current view, or a notebook that reproduces it.

The PNG is rendered on the server from the data (Datashader for scatter/line/2-D histogram, bars
for histograms), so it needs no browser and has exactly the plot's width x height in pixels.
The notebook is plain hvPlot/pandas code a student can read and grow from; it reads the original
file, applies the same renames, derived columns (numpy code generated from the checked formula)
and filters, then makes the same plot.
"""
from __future__ import annotations

import io
import json
import re
from datetime import datetime
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from . import expressions, text
from .spec import FileColumns, check_reader
from .render import aggregate, data_range, shade_image


def view_png(frame: pd.DataFrame, spec, x_range=None, y_range=None) -> bytes:
    """PNG bytes of ``spec.width`` x ``spec.height`` pixels showing the given (or full) ranges."""
    w, h = spec.width, spec.height
    if spec.kind == "hist":
        img = _histogram_image(frame, spec, x_range)
    else:
        x_range = x_range or data_range(frame[spec.x].to_numpy(), spec.logx)
        y_range = y_range or data_range(frame[spec.y].to_numpy(), spec.logy)
        size = (spec.bins, spec.bins) if spec.kind == "hist2d" else (w, h)
        agg = aggregate(frame, spec, x_range, y_range, *size)
        img = shade_image(agg.image, spec)
        if img.size != (w, h):
            img = img.resize((w, h), Image.NEAREST)
    if spec.title:
        ImageDraw.Draw(img).text((8, 6), spec.title, fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _histogram_image(frame: pd.DataFrame, spec, x_range=None) -> Image.Image:
    values = frame[spec.x].to_numpy()
    values = values[np.isfinite(values) & ((values > 0) if spec.logx else True)]
    lo, hi = x_range or ((values.min(), values.max()) if values.size else (0.0, 1.0))
    edges = np.geomspace(lo, hi, spec.bins + 1) if spec.logx and lo > 0 else np.linspace(lo, hi, spec.bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    img = Image.new("RGB", (spec.width, spec.height), "white")
    draw = ImageDraw.Draw(img)
    top = max(1.0, float(np.log10(counts.max() + 1) if spec.logy else counts.max()))
    bar_w = spec.width / len(counts)
    for i, c in enumerate(counts):
        v = np.log10(c + 1) if spec.logy else c
        y = spec.height - int((spec.height - 24) * v / top)
        draw.rectangle([int(i * bar_w), y, max(int(i * bar_w), int((i + 1) * bar_w) - 1), spec.height - 1],
                       fill=spec.color)
    return img


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
    cells.append(("code", "import numpy as np\nimport pandas as pd\nimport holoviews as hv\nimport hvplot.pandas  # noqa: F401\n"
                          "hv.extension('bokeh')"))
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
    cells.append(("code", _plot_code(spec, mode)))
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
        return "df = pd.read_csv(" + ", ".join(args) + ")\ndf.head()"
    if fmt == "parquet":
        return f"df = pd.read_parquet({str(path)!r})\ndf.head()"
    if fmt == "hdf5":
        return ("from panel_apps.loaders import read_hdf5  # pandas stores, 1-D datasets or 2-D arrays\n"
                f"df = read_hdf5({str(path)!r}, {str(options['dataset'])!r}, None)\ndf.head()")
    return (f"import uproot\ntree = uproot.open({str(path)!r})[{str(options['tree'])!r}]\n"
            "df = tree.arrays(library='pd')\ndf.head()")


def _plot_code(spec, mode: str) -> str:
    # hvPlot formats titles with str.format ('{label}'): braces doubled, so the title shows as typed
    style = dict(width=spec.width, height=spec.height, title=text.format_literal(spec.title), alpha=spec.alpha,
                 xlabel=spec.xlabel or spec.x, ylabel=spec.ylabel or (spec.y if spec.kind != "hist" else "rows"))
    if spec.kind == "hist":
        bins = (f"np.geomspace(df[{spec.x!r}][df[{spec.x!r}] > 0].min(), df[{spec.x!r}].max(), {spec.bins + 1})"
                if spec.logx else str(spec.bins))
        return (f"df.hvplot.hist({spec.x!r}, bins={bins}, color={spec.color!r}, logx={spec.logx}, logy={spec.logy}, "
                + _kw(style) + ")")
    if spec.kind == "hist2d":
        edge = lambda c, log: (f"np.geomspace(df[{c!r}][df[{c!r}] > 0].min(), df[{c!r}].max(), {spec.bins + 1})" if log
                               else f"np.linspace(df[{c!r}].min(), df[{c!r}].max(), {spec.bins + 1})")
        return (f"counts, xe, ye = np.histogram2d(df[{spec.x!r}], df[{spec.y!r}], "
                f"bins=[{edge(spec.x, spec.logx)}, {edge(spec.y, spec.logy)}])\n"
                f"hv.QuadMesh((xe, ye, np.where(counts.T > 0, counts.T, np.nan)), [{spec.x!r}, {spec.y!r}], 'rows')"
                f".opts(cmap='viridis', cnorm='eq_hist', colorbar=True, tools=['hover'], logx={spec.logx}, "
                f"logy={spec.logy}, " + _kw(style) + ")")
    method = "line" if spec.kind == "line" and not spec.color_by else "scatter"
    colour = (f"c={spec.color_by!r}, cmap='viridis', " if spec.color_by else f"color={spec.color!r}, ")
    if mode == "rasterized":
        # hvPlot's rasterize ignores log axes (holoviews#2195): plot log10 of the column instead
        lines, x, y = [], spec.x, spec.y
        for axis, col, log in (("x", spec.x, spec.logx), ("y", spec.y, spec.logy)):
            if log:
                new = f"log10({col})"
                lines.append(f"df[{new!r}] = np.log10(df[{col!r}].where(df[{col!r}] > 0))")
                style[f"{axis}label"] = f"log10({style[f'{axis}label']})"
                x, y = (new, y) if axis == "x" else (x, new)
        agg = "aggregator='mean', " if spec.color_by else ""
        colour = f"c={spec.color_by!r}, cmap='viridis', " if spec.color_by else f"cmap=[ 'white', {spec.color!r}], "
        lines.append(f"df.hvplot.{method}(x={x!r}, y={y!r}, rasterize=True, cnorm='eq_hist', {agg}{colour}"
                     + _kw(style) + ")")
        return "\n".join(lines)
    marker = f"marker={spec.marker!r}, size={spec.size!r}, " if method == "scatter" else f"line_width={max(1.0, spec.size / 2)!r}, "
    return (f"df.hvplot.{method}(x={spec.x!r}, y={spec.y!r}, {colour}{marker}logx={spec.logx}, logy={spec.logy}, "
            + _kw(style) + ")")


def _kw(style: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in style.items())


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
