"""Sphinx configuration of the sklearn-mach documentation."""

import sklearn_mach

project = "sklearn-mach"
copyright = "2026, sklearn-mach developers"
release = sklearn_mach.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
]
autosummary_generate = True
numpydoc_show_class_members = False
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
    "torch": ("https://pytorch.org/docs/stable", None),
}
templates_path = []
exclude_patterns = ["_build"]
html_theme = "pydata_sphinx_theme"
