"""Sphinx helpers of the sklearn-mach documentation (loaded by ``conf.py``).

* :class:`GalleryOrder`, the order of the example gallery;
* :func:`fix_docstring`, which keeps names of fitted attributes in
  docstrings (``of shape (n_features_in_,)``) from being read as reST
  hyperlink references, turns the references of docstrings inherited
  from scikit-learn to its own user guide into plain text when the build
  is offline (no intersphinx), and adds to the inherited ``score`` of
  :class:`~sklearn_mach.MACHClassifier` a note on multilabel targets;
* :func:`source_repository`, the URL of the source repository.

The benchmark figures and tables are in ``bench_results.py``, the math
renderer in ``mathtext_math.py``.
"""

import os
import re

#: Examples in the order of the gallery (first steps first); examples not
#: listed come after them, by file name.
GALLERY_ORDER = [
    "plot_quickstart.py",
    "plot_count_min_sketch.py",
    "plot_buckets_repetitions.py",
    "plot_text_tagging.py",
    "plot_extreme_k.py",
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
    * Append :data:`INHERITED_NOTES` to the docstrings they name, where
      those are inherited unchanged.
    """
    module = getattr(obj, "__module__", None) or ""
    foreign = module.split(".")[0] != "sklearn_mach"
    if foreign and "sphinx.ext.intersphinx" not in app.extensions:
        for i, line in enumerate(lines):
            lines[i] = _XREF.sub(lambda m: m.group(1) or m.group(2), line)
    if foreign and name in INHERITED_NOTES:
        lines.extend(["", *INHERITED_NOTES[name].splitlines()])
    for i, line in enumerate(lines):
        parts = _QUOTED.split(line)
        for j in range(0, len(parts), 2):  # even parts are outside quotes
            parts[j] = _TRAILING_UNDERSCORE.sub(r"\1\\_", parts[j])
        lines[i] = "".join(parts)


#: Notes appended to docstrings that a public class inherits unchanged.
INHERITED_NOTES = {
    "sklearn_mach.MACHClassifier.score": """\
.. note::

   For a multilabel (indicator) target this is the *subset accuracy*:
   a sample counts only if all its predicted labels are right, which
   with hundreds of labels almost never happens.  Evaluate rankings
   instead, with a precision-at-k scorer of :mod:`sklearn_mach.metrics`:
   ``get_scorer("precision_at_5")(clf, X, Y)``, or
   ``scoring=get_scorer("precision_at_5")`` in
   :class:`~sklearn.model_selection.GridSearchCV` (see
   :ref:`top_k`)."""
}


def source_repository():
    """The URL of the source repository, or None if it is not known.

    The ``Source`` (or ``Repository``, ``Homepage``) entry of the package's
    ``[project.urls]``; else, on Read the Docs, the URL it cloned.
    """
    from importlib import metadata

    try:
        entries = metadata.metadata("sklearn-mach").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        entries = []
    urls = {}
    for entry in entries:
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip()
    for label in ("source", "repository", "source code", "homepage"):
        if urls.get(label):
            return urls[label]
    clone = os.environ.get("READTHEDOCS_GIT_CLONE_URL", "")
    match = re.fullmatch(r"(?:https://|git@)([^/:]+)[/:](.+?)(?:\.git)?/?", clone)
    return f"https://{match.group(1)}/{match.group(2)}" if match else None


def setup(app):
    # after numpydoc (priority 500), which builds the reST of the sections
    app.connect("autodoc-process-docstring", fix_docstring, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
