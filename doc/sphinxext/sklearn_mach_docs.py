"""Sphinx helpers of the sklearn-mach documentation (loaded by ``conf.py``).

* the ``markdown-table`` directive, which renders the Markdown result
  tables that the benchmark scripts write (``benchmarks/results/*.md``);
* :class:`GalleryOrder`, the order of the example gallery;
* :func:`fix_docstring`, which keeps names of fitted attributes in
  docstrings (``of shape (n_features_in_,)``) from being read as reST
  hyperlink references, and turns the references of docstrings inherited
  from scikit-learn to its own user guide into plain text when the build
  is offline (no intersphinx).
"""

import os
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives

#: Examples in the order of the gallery (first steps first); examples not
#: listed come after them, by file name.
GALLERY_ORDER = [
    "plot_quickstart.py",
    "plot_count_min_sketch.py",
    "plot_buckets_repetitions.py",
    "plot_text_tagging.py",
    "plot_dask.py",
]


class GalleryOrder:
    """Sort key of sphinx-gallery's ``within_subsection_order``."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, item):
        name = os.path.basename(item)
        if name in GALLERY_ORDER:
            return (GALLERY_ORDER.index(name), name)
        return (len(GALLERY_ORDER), name)

    def __repr__(self):
        return f"GalleryOrder({GALLERY_ORDER})"


class MarkdownTable(Directive):
    """Render the pipe tables of a Markdown results file as tables.

    ``.. markdown-table:: ../benchmarks/results/accuracy.md`` (a path
    relative to the document) turns each run of ``| ... |`` lines into a
    table (the second line of a run is the Markdown header rule) and every
    other non-empty line into a paragraph.  With ``:optional:`` a missing
    file renders the directive's content instead of failing.
    """

    required_arguments = 1
    has_content = True
    option_spec = {"optional": directives.flag}

    def run(self):
        env = self.state.document.settings.env
        _, path = env.relfn2path(self.arguments[0])
        path = Path(path)
        if not path.is_file():
            if "optional" in self.options:
                container = nodes.container()
                self.state.nested_parse(self.content, self.content_offset, container)
                return container.children
            raise self.error(f"markdown-table: no file {path}")
        env.note_dependency(str(path))
        result, rows = [], []
        for line in path.read_text(encoding="utf-8").splitlines() + [""]:
            line = line.strip()
            if line.startswith("|"):
                rows.append([cell.strip() for cell in line.strip("|").split("|")])
                continue
            if rows:
                result.append(self._table(rows))
                rows = []
            if line:
                result.append(nodes.paragraph(text=line))
        return result

    @staticmethod
    def _table(rows):
        header = rows[0]
        body = [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]
        table = nodes.table(classes=["markdown-table"])
        group = nodes.tgroup(cols=len(header))
        table += group
        group.extend(nodes.colspec(colwidth=1) for _ in header)
        for part, part_rows in ((nodes.thead(), [header]), (nodes.tbody(), body)):
            for cells in part_rows:
                row = nodes.row()
                for cell in cells + [""] * (len(header) - len(cells)):
                    row += nodes.entry("", nodes.paragraph(text=cell))
                part += row
            group += part
        return table


#: Inline literals and interpreted text (roles, references): left alone.
_QUOTED = re.compile(r"(``.*?``|`[^`]*`_{0,2})")
#: A name ending in ``_`` followed by punctuation: a reST reference.
_TRAILING_UNDERSCORE = re.compile(r"\b([A-Za-z]\w*?)_(?=[,;.)\]])")


#: ``:ref:`title <label>``` or ``:term:`label```: cross-references.
_XREF = re.compile(r":(?:ref|term|doc):`([^`<]*?)\s*(?:<([^>`]*)>)?`")


def fix_docstring(app, what, name, obj, options, lines):
    """Make docstrings build without warnings, offline.

    * Escape ``name_`` (outside literals) before ``,``, ``)`` etc. as
      ``name\\_``: scikit-learn style docstrings write shapes such as
      ``(n_features_in_,)`` in attribute and parameter types, where reST
      would read ``n_features_in_`` as a reference to an undefined target.
    * Methods inherited from scikit-learn (``score``, ``get_params``, ...)
      refer to labels and glossary terms of scikit-learn's documentation;
      without intersphinx they cannot resolve, so they become plain text.
    """
    module = getattr(obj, "__module__", None) or ""
    foreign = module.split(".")[0] != "sklearn_mach"
    if foreign and "sphinx.ext.intersphinx" not in app.extensions:
        for i, line in enumerate(lines):
            lines[i] = _XREF.sub(lambda m: m.group(1) or m.group(2), line)
    for i, line in enumerate(lines):
        parts = _QUOTED.split(line)
        for j in range(0, len(parts), 2):  # even parts are outside quotes
            parts[j] = _TRAILING_UNDERSCORE.sub(r"\1\\_", parts[j])
        lines[i] = "".join(parts)


def setup(app):
    app.add_directive("markdown-table", MarkdownTable)
    # after numpydoc (priority 500), which builds the reST of the sections
    app.connect("autodoc-process-docstring", fix_docstring, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
