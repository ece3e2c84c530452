"""Sphinx configuration of the sklearn-mach documentation.

Build (warnings are errors, every cross-reference is checked; the gallery
examples are executed)::

    python -m sphinx -W --keep-going -b html doc doc/_build/html

The default build needs no network access, and neither does the site it
writes: math is drawn at build time (``sphinxext/mathtext_math.py``) and
no page loads anything from a CDN.

* Data: the examples read their datasets from
  :func:`sklearn_mach.datasets.get_data_home`, that is
  ``$SKLEARN_MACH_DATA`` or ``~/sklearn_mach_data``.  When the variable is
  unset and a ``shared/data`` folder lies beside the checkout (the
  development set-up), this file points the variable there.
* Links to other projects: ``SKLEARN_MACH_DOCS_INTERSPHINX=1`` turns on
  intersphinx, which downloads the inventories of Python, NumPy, SciPy,
  scikit-learn, PyTorch, skorch, joblib and Dask (the hosted build does,
  see ``.readthedocs.yaml``).  Without it, references to those projects
  render as plain code text, and ``nitpick_ignore_regex`` below excuses
  exactly those (their namespaces only); every reference into
  sklearn-mach itself must resolve in both builds.
* ``-D plot_gallery=0`` skips running the examples (the pages that show
  their figures then warn).
"""

import os
import sys
from pathlib import Path

# Examples train torch networks inside this process.  On a shared CI runner
# idle OpenMP threads that spin instead of sleeping make torch several times
# slower as soon as another job uses the cores; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DOC_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DOC_DIR / "sphinxext"))

# Data of the examples: the development checkout's shared/data, unless the
# caller chose a folder (build configuration, not library behaviour).
_SHARED_DATA = DOC_DIR.parent.parent / "shared" / "data"
if not os.environ.get("SKLEARN_MACH_DATA") and _SHARED_DATA.is_dir():
    os.environ["SKLEARN_MACH_DATA"] = str(_SHARED_DATA)

from sklearn_mach_docs import source_repository  # noqa: E402

import sklearn_mach  # noqa: E402
from sklearn_mach._persistence import TRUSTED_OPTIMIZERS  # noqa: E402

project = "sklearn-mach"
copyright = "2026, sklearn-mach developers"
release = sklearn_mach.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "mathtext_math",  # sphinxext/: math as SVG at build time, no MathJax
    "bench_results",  # sphinxext/: benchmark figures and tables from results/
    "sklearn_mach_docs",  # sphinxext/: gallery order, docstring fixes
]
templates_path = ["_templates"]
exclude_patterns = ["_build"]
root_doc = "index"
html_math_renderer = "mathtext"

# Every reference must resolve (see nitpick_ignore_regex below for the
# external ones of the offline build).
nitpicky = True

# -- API reference -----------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"
# An undocumented override shows nothing rather than its base class's text
# (torch's "Should be overridden by all subclasses" on MACHNetwork.forward).
autodoc_inherit_docstrings = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- Cross-links to other projects: opt in, the default build is offline -----
INTERSPHINX = os.environ.get("SKLEARN_MACH_DOCS_INTERSPHINX") == "1"
#: Top-level packages (and Python modules) whose objects the docs refer to.
EXTERNAL_PACKAGES = [
    "dask",
    "distributed",
    "io",
    "joblib",
    "matplotlib",
    "mmap",
    "numpy",
    "pathlib",
    "pickle",
    "scipy",
    "skorch",
    "sklearn",
    "torch",
]
if INTERSPHINX:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "skorch": ("https://skorch.readthedocs.io/en/stable", None),
        "joblib": ("https://joblib.readthedocs.io/en/stable", None),
        "distributed": ("https://distributed.dask.org/en/stable", None),
        "matplotlib": ("https://matplotlib.org/stable", None),
    }
else:
    # Offline, intersphinx cannot resolve references to other projects:
    # excuse those, and only those (a Python object of one of the external
    # packages above).  A broken reference into sklearn_mach still fails.
    nitpick_ignore_regex = [
        (r"py:.*", rf"({'|'.join(EXTERNAL_PACKAGES)})(\..+)?"),
    ]

# -- Example gallery ----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # first steps first: the order is sphinxext/sklearn_mach_docs.GALLERY_ORDER
    "within_subsection_order": "sklearn_mach_docs.GalleryOrder",
    "doc_module": ("sklearn_mach",),
    "backreferences_dir": "generated/backreferences",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    # its timing pages load jQuery and DataTables from CDNs: the site stays
    # offline without them (the build log prints the times)
    "write_computation_times": False,
    "matplotlib_animations": False,
}

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-mach {release}"
SOURCE_REPOSITORY = source_repository()
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
    "icon_links": (
        [
            {
                "name": "Source repository",
                "url": SOURCE_REPOSITORY,
                "icon": "fa-brands fa-git-alt",
            }
        ]
        if SOURCE_REPOSITORY
        else []
    ),
}
# Pages with no sub-pages: no empty left sidebar, the content takes its width.
html_sidebars = {
    page: []
    for page in (
        "index",
        "getting_started",
        "user_guide",
        "datasets",
        "benchmarks",
        "whats_new",
        "citing",
    )
}
html_static_path = ["_static"]
html_css_files = ["sklearn_mach.css"]
html_show_sourcelink = False

# Substitutions for every page.
# |repository|: a link to the source repository where it is known.
rst_epilog = (
    f".. |repository| replace:: `{SOURCE_REPOSITORY} <{SOURCE_REPOSITORY}>`__\n"
    if SOURCE_REPOSITORY
    else ".. |repository| replace:: the sklearn-mach source repository\n"
)
# |trusted_optimizers|: the optimizers a model file may name without being
# trusted explicitly, read from the code so that the user guide cannot drift.
_optimizers = [
    f":class:`~sklearn_mach.{o.__name__}`"
    if o.__module__.startswith("sklearn_mach")
    else f":class:`torch.optim.{o.__name__}`"
    for o in TRUSTED_OPTIMIZERS
]
rst_epilog += (
    ".. |trusted_optimizers| replace:: "
    + ", ".join(_optimizers[:-1])
    + f" and {_optimizers[-1]}\n"
)
