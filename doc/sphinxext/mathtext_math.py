"""Math rendered at build time by matplotlib's mathtext: a site with no MathJax.

Sphinx's HTML builder shows ``:math:`` roles and ``.. math::`` directives
(including those numpydoc makes of docstrings) through a *math renderer*.
The default, ``sphinx.ext.mathjax``, loads MathJax from a CDN, so a site
opened offline shows raw ``\\( ... \\)``; ``sphinx.ext.imgmath`` needs LaTeX.
This renderer needs neither: matplotlib's mathtext (already a dependency of
the gallery) draws every formula as an SVG file under ``_images/math/`` at
build time, sized in ``em`` so that it scales with the text around it.

Mathtext covers the usual LaTeX math (fractions, sums, roots, sub- and
superscripts, Greek letters, ``\\mathrm``, ``\\left( ... \\right)``); a few
commands it lacks are rewritten first (:data:`REWRITES`).  A formula it
cannot parse is a build warning (an error with ``-W``) naming the formula.
A display block with several equations separated by blank lines renders
one image per equation.

Enable it with ``extensions += ["mathtext_math"]`` and
``html_math_renderer = "mathtext"``.
"""

import hashlib
import html
import re
from io import BytesIO
from pathlib import Path

from docutils import nodes
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)

#: LaTeX that mathtext does not know, and what it becomes.
REWRITES = [
    (re.compile(r"\\[bB]ig{1,2}[lr]?(?![a-zA-Z])"), ""),  # \big( -> (
    (re.compile(r"\\bmod(?![a-zA-Z])"), r"\\;\\mathrm{mod}\\;"),
    (re.compile(r"\\pmod\{([^}]*)\}"), r"\\;(\\mathrm{mod}\\;\1)"),
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\ge(?![a-zA-Z])"), r"\\geq"),
    (re.compile(r"\\le(?![a-zA-Z])"), r"\\leq"),
    (re.compile(r"\\[lr]Vert(?![a-zA-Z])"), r"\\Vert"),
    (re.compile(r"\\[lr]vert(?![a-zA-Z])"), r"|"),
    (re.compile(r"\\&"), r"\\text{\\&}"),
]

#: Font size the formulas are laid out at, in points.  Only proportions
#: matter: images are sized in em of the surrounding text.
FONT_SIZE = 10.0
#: Display formulas are drawn this much larger than inline ones.
DISPLAY_SCALE = 1.15


#: (width, height, depth) in points of the formulas written by this process.
_SIZES = {}


class MathtextError(Exception):
    pass


def to_mathtext(latex):
    """``latex`` with the :data:`REWRITES` applied, on one line."""
    text = " ".join(latex.split())
    for pattern, replacement in REWRITES:
        text = pattern.sub(replacement, text)
    return text


def render_svg(latex, fontset):
    """SVG bytes of ``latex`` and its (width, height, depth) in points."""
    import matplotlib

    matplotlib.use("agg")
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser

    text = f"${to_mathtext(latex)}$"
    with rc_context(
        {"mathtext.fontset": fontset, "svg.fonttype": "path", "svg.hashsalt": "m"}
    ):
        prop = FontProperties(size=FONT_SIZE)
        try:
            # parse at 10x the resolution for sub-point sizes
            width, height, depth, _, _ = MathTextParser("path").parse(
                text, dpi=720, prop=prop
            )
        except ValueError as exc:
            message = str(exc).strip().splitlines()
            raise MathtextError(message[-1] if message else "cannot parse") from None
        width, height, depth = width / 10, height / 10, depth / 10
        fig = Figure(figsize=(width / 72, height / 72))
        fig.text(0, depth / height, text, fontproperties=prop)
        buffer = BytesIO()
        fig.savefig(buffer, format="svg", transparent=True, metadata={"Date": None})
    return buffer.getvalue(), (width, height, depth)


def _image(translator, latex, display):
    """The ``<img>`` of one formula, its SVG written under ``_images/math``."""
    builder = translator.builder
    fontset = builder.config.mathtext_fontset
    key = f"{fontset}\0{latex}".encode()
    name = hashlib.sha1(key).hexdigest()[:16] + ".svg"
    folder = Path(builder.outdir) / builder.imagedir / "math"
    path = folder / name
    if name not in _SIZES or not path.is_file():
        svg, size = render_svg(latex, fontset)
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(svg)
        _SIZES[name] = size
    width, height, depth = (v / FONT_SIZE for v in _SIZES[name])
    scale = DISPLAY_SCALE if display else 1.0
    src = f"{builder.imgpath}/math/{name}"
    style = f"width: {scale * width:.3f}em; height: {scale * height:.3f}em"
    if not display:
        style += f"; vertical-align: {-depth:.3f}em"
    alt = html.escape(latex.strip(), quote=True)
    return (
        f'<img class="math dark-light" src="{src}" alt="{alt}" title="{alt}" '
        f'style="{style}"/>'
    )


def _fail(translator, node, latex, exc):
    logger.warning(
        "mathtext cannot render %r: %s", latex, exc, location=node, type="mathtext"
    )
    return f'<span class="math">{translator.encode(latex)}</span>'


def visit_math(self, node):
    latex = node.astext()
    try:
        self.body.append(_image(self, latex, display=False))
    except MathtextError as exc:
        self.body.append(_fail(self, node, latex, exc))
    raise nodes.SkipNode


def visit_displaymath(self, node):
    self.body.append(self.starttag(node, "div", CLASS="math"))
    self.body.append("<p>")
    if node["number"]:
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})')
        self.add_permalink_ref(node, _("Link to this equation"))
        self.body.append("</span>")
    parts = [p for p in re.split(r"\n\s*\n", node.astext()) if p.strip()]
    for i, latex in enumerate(parts):
        if i:
            self.body.append("<br/>")
        try:
            self.body.append(_image(self, latex, display=True))
        except MathtextError as exc:
            self.body.append(_fail(self, node, latex, exc))
    self.body.append("</p>\n</div>")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer(
        "mathtext",
        inline_renderers=(visit_math, None),
        block_renderers=(visit_displaymath, None),
    )
    app.add_config_value("mathtext_fontset", "cm", "html", types=frozenset({str}))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
