"""The benchmark results on the documentation site: figures and tables.

The benchmark scripts (``benchmarks/bench_scale.py``,
``benchmarks/bench_accuracy.py``) write their results as Markdown files
under ``benchmarks/results/``: a few lines of prose (the machine, the
command in backquotes), pipe tables, notes.  This module reads those files
at build time, so the pages follow the committed results with no manual
step:

``.. benchmark-figure:: KIND``
    A figure drawn with matplotlib from the result files, written as SVG
    under ``generated/benchmarks/`` and shown with the directive's content
    as its caption.  ``KIND`` is ``accuracy-size`` (P@1 against model MB,
    one panel per dataset), ``fit-time`` or ``predict-time`` (seconds
    against the number of classes ``K``).  Options: ``:results:`` glob
    patterns relative to the document, space separated (default
    ``../benchmarks/results/scale*.md``); ``:datasets:`` the datasets to
    show, in order (default: all); ``:width:`` of the image; ``:alt:``.
    Missing files, datasets or values leave gaps; a figure with no data at
    all becomes a short paragraph saying so.  The page is rebuilt when a
    result file changes.

``.. markdown-table:: PATH``
    The tables and prose of one result file.  Backquoted text becomes
    literal text, a ``Command:`` line a literal block, so commands copy
    exactly, and a Markdown heading (``## Before``) a rubric.
    ``:columns:`` keeps only the listed columns (comma separated) of the
    tables that have them; ``:tables:`` keeps only these tables (1-based,
    space separated); ``:no-prose:`` drops the prose; ``:optional:``
    renders the directive's content when the file is missing.

``.. details:: SUMMARY``
    A collapsible block (HTML ``<details>``): what it contains is hidden
    until the reader opens it.  Other builders show the content as is.
"""

import glob
import hashlib
import math
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

DEFAULT_RESULTS = "../benchmarks/results/scale*.md"
FIGURE_FOLDER = "generated/benchmarks"

# --------------------------------------------------------------------------
# Reading the result files
# --------------------------------------------------------------------------

#: Column names of the different scripts, and the key each one is read as.
COLUMN_KEYS = {
    "dataset": "dataset",
    "K": "K",
    "n_train": "n_train",
    "n_test": "n_test",
    "method": "method",
    "config": "config",
    "epochs": "epochs",
    "P@1": "P@1",
    "P@3": "P@3",
    "P@5": "P@5",
    "fit s": "fit_s",
    "fit_s": "fit_s",
    "predict s": "predict_s",
    "predict_s": "predict_s",
    "model MB": "model_mb",
    "model_mb": "model_mb",
    "peak RSS MiB": "peak_rss_mib",
    "status": "status",
}
NUMERIC = {"K", "n_train", "n_test", "epochs", "P@1", "P@3", "P@5"}
NUMERIC |= {"fit_s", "predict_s", "model_mb", "peak_rss_mib"}


def read_markdown(text):
    """The blocks of a results file: ``("table", header, rows)``,
    ``("heading", title)`` or ``("text", line)``.

    A table is a run of lines starting with ``|``; its second line is the
    Markdown header rule and is dropped.  Rows are padded or cut to the
    header's length.  A heading is an unindented ``#`` line (an indented
    one is a command's comment).
    """
    blocks, rows = [], []
    for raw in text.splitlines() + [""]:
        line = raw.strip()
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
            continue
        if rows:
            header, body = rows[0], rows[1:]
            body = [r for r in body if not set("".join(r)) <= set("-: ")]
            body = [(r + [""] * len(header))[: len(header)] for r in body]
            blocks.append(("table", header, body))
            rows = []
        heading = re.fullmatch(r"#{1,6}\s+(.*\S)\s*", raw)
        if heading:
            blocks.append(("heading", heading.group(1)))
        elif line:
            blocks.append(("text", line))
    return blocks


def number(cell):
    """``"1,000"`` -> 1000.0; ``"—"``, ``""`` and other text -> None."""
    try:
        value = float(cell.replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _method_and_config(method, config):
    """bench_accuracy writes ``MACH B=256 R=8`` / ``full network K=159``."""
    if config or " " not in method:
        return method, config
    head, _, rest = method.partition(" ")
    if head.lower() == "mach":
        return "mach", rest
    if head.lower() == "full":
        return "full", rest
    return method, config


def result_rows(paths):
    """The method rows of the main tables of ``paths``, as dicts.

    A main table has a ``dataset``, a ``method`` and a ``P@1`` column.
    Numbers are floats (None where the file has ``—``); a row that repeats
    the (dataset, method, config) of an earlier one replaces it.
    """
    rows = {}
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            continue
        for block in read_markdown(text):
            if block[0] != "table":
                continue
            _, header, body = block
            if not {"dataset", "method", "P@1"} <= set(header):
                continue
            for cells in body:
                row = {"source": str(path)}
                for name, cell in zip(header, cells):
                    key = COLUMN_KEYS.get(name)
                    if key:
                        row[key] = number(cell) if key in NUMERIC else cell
                row["method"], row["config"] = _method_and_config(
                    row.get("method", ""), row.get("config", "")
                )
                key = (row.get("dataset"), row["method"], row["config"])
                rows.pop(key, None)
                rows[key] = row
    return list(rows.values())


def _synthetic_k(dataset):
    match = re.fullmatch(r"synthetic-(\d+)", dataset or "")
    return int(match.group(1)) if match else None


def dataset_order(rows):
    """Real datasets by K, then synthetic ones by K."""
    ks = {}
    for row in rows:
        ks.setdefault(row["dataset"], row.get("K") or _synthetic_k(row["dataset"]))
    return sorted(ks, key=lambda d: (_synthetic_k(d) is not None, ks[d] or math.inf, d))


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------

#: label, colour, marker of each method; others get the next free colour.
METHOD_STYLE = {
    "mach": ("MACH, defaults", "#1f77b4", "o"),
    "mach-tuned": ("MACH, tuned", "#17becf", "s"),
    "mach-sweep": ("MACH, other settings (sweep)", "#9ecae1", "o"),
    "full": ("full-output network", "#d62728", "^"),
    "ovr-lr": ("one-vs-rest logistic", "#7f7f7f", "v"),
    "napkinxc": ("napkinXC (PLT)", "#2ca02c", "D"),
    "omikuji": ("omikuji (Parabel)", "#ff7f0e", "P"),
}
_SPARE_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22"]


def method_style(method, seen=None):
    if method in METHOD_STYLE:
        return METHOD_STYLE[method]
    seen = seen if seen is not None else {}
    colour = seen.setdefault(method, _SPARE_COLOURS[len(seen) % len(_SPARE_COLOURS)])
    return method, colour, "X"


def method_order(rows):
    known = [m for m in METHOD_STYLE if any(r["method"] == m for r in rows)]
    return known + sorted({r["method"] for r in rows} - set(known))


def short_config(config):
    """A MACH config for a label: ``B=2048 R=4 n_hashed_features=8192`` ->
    ``B=2048 R=4 hashed 8192``."""
    config = re.sub(r"n_hashed_features=(\d+)", r"hashed \1", config or "")
    config = re.sub(r"hidden_layer_sizes=(\[\]|\(\))", "linear", config)
    return config


def _fmt_k(k):
    k = int(k)
    exponent = int(round(math.log10(k))) if k > 0 else 0
    if k == 10**exponent and exponent >= 3:
        return f"$10^{exponent}$"
    return f"{k:,}"


def _dataset_title(dataset, rows):
    row = next((r for r in rows if r["dataset"] == dataset), {})
    k = row.get("K") or _synthetic_k(dataset)
    name = "synthetic" if _synthetic_k(dataset) else dataset
    parts = [name]
    if k:
        parts.append(f"K = {_fmt_k(k)}")
    if row.get("n_train"):
        parts.append(f"{int(row['n_train']):,} train")
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


def _legend_handles(methods, extra=()):
    from matplotlib.lines import Line2D

    handles = []
    for method in methods:
        label, colour, marker = method_style(method)
        handles.append(
            Line2D([], [], color=colour, marker=marker, ls="none", label=label)
        )
    return handles + list(extra)


def plot_accuracy_size(rows, datasets=None):
    """P@1 against model MB, one panel per dataset."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    datasets = [d for d in (datasets or dataset_order(rows))]
    ncols = min(4, len(datasets) + 1)
    nrows = math.ceil((len(datasets) + 1) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    size_only = False
    for ax, dataset in zip(axes, datasets):
        here = [r for r in rows if r["dataset"] == dataset]
        n_labels = 0
        for row in here:
            label, colour, marker = method_style(row["method"])
            mb, p1 = row.get("model_mb"), row.get("P@1")
            if mb is None:
                continue
            if p1 is None:  # built to weigh it, not trained
                ax.axvline(mb, color=colour, ls="--", lw=1)
                size_only = True
                continue
            ax.plot(mb, p1, marker=marker, color=colour, ls="none", ms=7)
            if row["method"].startswith("mach") and row.get("config"):
                # alternately below and above the point, so neighbours differ
                n_labels += 1
                ax.annotate(
                    short_config(row["config"]),
                    (mb, p1),
                    xytext=(4, -10 if n_labels % 2 else 6),
                    textcoords="offset points",
                    fontsize=6.5,
                    color="0.3",
                )
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.15)
        _nice_log_ticks(ax)
        ax.set_title(_dataset_title(dataset, rows), fontsize=9)
        ax.set_xlabel("model size (MB, log scale)", fontsize=8)
        ax.set_ylabel("P@1", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "no results", ha="center", transform=ax.transAxes)
    legend_ax = axes[len(datasets)]
    legend_ax.axis("off")
    extra = []
    if size_only:
        extra.append(
            Line2D([], [], color="0.3", ls="--", label="size only (not trained)")
        )
    legend_ax.legend(
        handles=_legend_handles(method_order(rows), extra),
        loc="center",
        fontsize=8,
        frameon=False,
        title="up and to the left is better",
        title_fontsize=8,
    )
    for ax in axes[len(datasets) + 1 :]:
        ax.axis("off")
    return fig


def _nice_log_ticks(ax):
    """Ticks at 1, 2, 5 x 10^n inside the x range of a log axis, as plain numbers."""
    low, high = ax.get_xlim()
    ticks = [
        m * 10.0**e
        for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
        for m in (1, 2, 5)
        if low <= m * 10.0**e <= high
    ]
    if len(ticks) > 6:
        ticks = [t for t in ticks if round(t / 10 ** math.floor(math.log10(t))) != 2]
    ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
    ax.minorticks_off()


def plot_time(rows, key, ylabel, size_key, size_label):
    """``key`` (``fit_s`` or ``predict_s``) against K: the synthetic sweep as
    lines, the real datasets as points; the tick labels give ``size_key``
    (``n_train`` or ``n_test``) of each dataset."""
    from matplotlib.figure import Figure

    rows = [
        r for r in rows if r.get(key) and (r.get("K") or _synthetic_k(r["dataset"]))
    ]
    synthetic = [r for r in rows if _synthetic_k(r["dataset"])]
    real = [r for r in rows if not _synthetic_k(r["dataset"])]
    panels = [(synthetic, "synthetic K sweep"), (real, "real datasets")]
    panels = [(p, title) for p, title in panels if p]
    fig = Figure(figsize=(5.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    for ax, (panel, title) in zip(axes, panels):
        ticks = {}
        for method in method_order(panel):
            label, colour, marker = method_style(method)
            mine = sorted(
                (r for r in panel if r["method"] == method),
                key=lambda r: r.get("K") or 0,
            )
            xs = [r.get("K") or _synthetic_k(r["dataset"]) for r in mine]
            ys = [r[key] for r in mine]
            ls = "-" if panel is synthetic else "none"
            ax.plot(xs, ys, marker=marker, color=colour, ls=ls, label=label, ms=6)
            for x, r in zip(xs, mine):
                size = r.get(size_key)
                size = f"\n{int(size):,} {size_label}" if size else ""
                if panel is synthetic:
                    ticks.setdefault(x, f"K = {_fmt_k(x)}{size}")
                else:
                    ticks.setdefault(x, f"{r['dataset']}\nK = {int(x):,}{size}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(list(ticks), labels=list(ticks.values()), fontsize=7)
        ax.minorticks_off()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("number of classes K (log scale)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.margins(x=0.12)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


KINDS = {
    "accuracy-size": lambda rows, datasets: plot_accuracy_size(rows, datasets),
    "fit-time": lambda rows, datasets: plot_time(
        rows, "fit_s", "fit time (s, log scale)", "n_train", "train"
    ),
    "predict-time": lambda rows, datasets: plot_time(
        rows, "predict_s", "top-5 prediction time (s, log scale)", "n_test", "queries"
    ),
}


def draw(kind, rows, datasets=None):
    """The SVG bytes of figure ``kind``, or None if there is nothing to draw."""
    import io

    from matplotlib import rc_context

    if datasets:
        rows = [r for r in rows if r["dataset"] in datasets]
        datasets = [d for d in datasets if any(r["dataset"] == d for r in rows)]
    if kind != "accuracy-size":
        key = "fit_s" if kind == "fit-time" else "predict_s"
        if not any(
            r.get(key) and (r.get("K") or _synthetic_k(r["dataset"])) for r in rows
        ):
            return None
    if not rows:
        return None
    with rc_context({"svg.hashsalt": "bench", "font.size": 8}):
        fig = KINDS[kind](rows, datasets)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


class BenchmarkFigure(SphinxDirective):
    """``.. benchmark-figure:: KIND`` (see the module documentation)."""

    required_arguments = 1
    has_content = True
    option_spec = {
        "results": directives.unchanged,
        "datasets": directives.unchanged,
        "width": directives.length_or_percentage_or_unitless,
        "alt": directives.unchanged,
    }

    def run(self):
        kind = self.arguments[0]
        if kind not in KINDS:
            raise self.error(f"benchmark-figure: KIND is one of {sorted(KINDS)}")
        paths = []
        for pattern in self.options.get("results", DEFAULT_RESULTS).split():
            _, absolute = self.env.relfn2path(pattern, self.env.docname)
            paths += sorted(glob.glob(absolute))
        for path in paths:
            self.env.note_dependency(path)
        self.env.note_dependency(__file__)
        datasets = self.options.get("datasets", "").replace(",", " ").split()
        svg = draw(kind, result_rows(paths), datasets)
        if svg is None:
            para = nodes.paragraph(
                text=f"(No benchmark results for this figure in {', '.join(paths)}"
                " yet.)"
                if paths
                else "(No benchmark result files found for this figure.)"
            )
            return [para]
        name = f"{kind}-{hashlib.sha1(svg).hexdigest()[:12]}.svg"
        folder = Path(self.env.srcdir) / FIGURE_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / name).is_file():
            (folder / name).write_bytes(svg)
        image = nodes.image(
            uri=f"/{FIGURE_FOLDER}/{name}",
            alt=self.options.get("alt", f"benchmark figure: {kind}"),
            width=self.options.get("width", "100%"),
        )
        figure = nodes.figure("", image, classes=["benchmark-figure"])
        if self.content:
            caption_parent = nodes.Element()
            self.state.nested_parse(self.content, self.content_offset, caption_parent)
            first = caption_parent[0]
            if isinstance(first, nodes.paragraph):
                figure += nodes.caption(first.rawsource, "", *first.children)
                if len(caption_parent) > 1:
                    figure += nodes.legend("", *caption_parent[1:])
            else:
                figure += nodes.legend("", *caption_parent.children)
        return [figure]


# --------------------------------------------------------------------------
# Tables and prose
# --------------------------------------------------------------------------

_BACKQUOTED = re.compile(r"`([^`]+)`")


def inline_nodes(text):
    """``text`` with its backquoted parts as literal nodes."""
    parts = _BACKQUOTED.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(nodes.literal(part, part))
        elif part:
            out.append(nodes.Text(part))
    return out


def table_node(header, rows):
    table = nodes.table(classes=["markdown-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in header)
    for part, part_rows in ((nodes.thead(), [header]), (nodes.tbody(), rows)):
        for cells in part_rows:
            row = nodes.row()
            for cell in cells:
                row += nodes.entry("", nodes.paragraph("", "", *inline_nodes(cell)))
            part += row
        group += part
    return table


class MarkdownTable(SphinxDirective):
    """``.. markdown-table:: PATH`` (see the module documentation)."""

    required_arguments = 1
    has_content = True
    option_spec = {
        "optional": directives.flag,
        "columns": directives.unchanged,
        "tables": directives.unchanged,
        "no-prose": directives.flag,
    }

    def run(self):
        _, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        path = Path(path)
        if not path.is_file():
            if "optional" in self.options:
                container = nodes.container()
                self.state.nested_parse(self.content, self.content_offset, container)
                return container.children
            raise self.error(f"markdown-table: no file {path}")
        self.env.note_dependency(str(path))
        columns = [c.strip() for c in self.options.get("columns", "").split(",")]
        columns = [c for c in columns if c]
        wanted = {int(t) for t in self.options.get("tables", "").split()}
        result, n_tables = [], 0
        for block in read_markdown(path.read_text(encoding="utf-8")):
            if block[0] != "table":
                if "no-prose" not in self.options:
                    result += self._prose(*block)
                continue
            _, header, rows = block
            n_tables += 1
            if wanted and n_tables not in wanted:
                continue
            if columns and set(columns) <= set(header):
                keep = [header.index(c) for c in columns]
                header = [header[i] for i in keep]
                rows = [[r[i] for i in keep] for r in rows]
            result.append(table_node(header, rows))
        return result

    @staticmethod
    def _prose(kind, line):
        if kind == "heading":  # the file's, not a section of the page
            return [nodes.rubric("", "", *inline_nodes(line))]
        match = re.fullmatch(r"Command:\s*`([^`]+)`\s*", line)
        if match:
            command = match.group(1)
            return [
                nodes.paragraph(text="Command:"),
                nodes.literal_block(command, command, language="bash"),
            ]
        return [nodes.paragraph("", "", *inline_nodes(line))]


# --------------------------------------------------------------------------
# Collapsible blocks
# --------------------------------------------------------------------------


class details(nodes.General, nodes.Element):
    """A collapsible block; ``summary`` is the text of its toggle."""


def visit_details_html(self, node):
    self.body.append(self.starttag(node, "details", CLASS="sk-details"))
    self.body.append(f"<summary>{self.encode(node['summary'])}</summary>\n")


def depart_details_html(self, node):
    self.body.append("</details>\n")


def visit_details_other(self, node):
    pass


def depart_details_other(self, node):
    pass


class Details(SphinxDirective):
    """``.. details:: SUMMARY`` (see the module documentation)."""

    required_arguments = 1
    final_argument_whitespace = True
    has_content = True

    def run(self):
        node = details(summary=self.arguments[0])
        self.state.nested_parse(self.content, self.content_offset, node)
        return [node]


def setup(app):
    app.add_directive("benchmark-figure", BenchmarkFigure)
    app.add_directive("markdown-table", MarkdownTable)
    app.add_directive("details", Details)
    other = (visit_details_other, depart_details_other)
    app.add_node(
        details,
        html=(visit_details_html, depart_details_html),
        latex=other,
        text=other,
        man=other,
        texinfo=other,
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}
