"""Sphinx configuration of the sklearn-mach documentation.

Build (warnings are errors; the gallery examples are executed and read the
real datasets from ``shared/data`` beside the checkout, or from
``$SKLEARN_MACH_DATA``)::

    python -m sphinx -W --keep-going -b html doc doc/_build/html

The build needs no network access.  ``SKLEARN_MACH_DOCS_INTERSPHINX=1``
links to the Python, NumPy, SciPy, scikit-learn and PyTorch docs through
intersphinx, which downloads their inventories; ``-D plot_gallery=0``
skips running the examples (the pages that show their figures then warn).
"""

import os
import sys
from pathlib import Path

# Examples train torch networks inside this process.  On a shared CI runner
# idle OpenMP threads that spin instead of sleeping make torch several times
# slower as soon as another job uses the cores; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sklearn_mach  # noqa: E402

DOC_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DOC_DIR / "sphinxext"))

project = "sklearn-mach"
copyright = "2026, sklearn-mach developers"
release = sklearn_mach.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "sklearn_mach_docs",  # sphinxext/: the markdown-table directive
]
templates_path = ["_templates"]
exclude_patterns = ["_build"]
root_doc = "index"

# -- API reference -----------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- Cross-links to other projects: opt in, the default build is offline -----
if os.environ.get("SKLEARN_MACH_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "joblib": ("https://joblib.readthedocs.io/en/stable", None),
    }

# -- Example gallery ----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # first steps first: the order is sphinxext/sklearn_mach_docs.GALLERY_ORDER
    "within_subsection_order": "sklearn_mach_docs.GalleryOrder",
    "doc_module": ("sklearn_mach",),
    "reference_url": {"sklearn_mach": None},  # link code to this API reference
    "backreferences_dir": "generated/backreferences",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "matplotlib_animations": False,
}

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-mach {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_static_path = []
html_show_sourcelink = False
