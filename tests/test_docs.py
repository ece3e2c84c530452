"""The quickstart that the README and the landing page show runs as written."""

import contextlib
import io
import re
import textwrap
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import make_multilabel_classification

ROOT = Path(__file__).resolve().parent.parent


def readme_quickstart():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def landing_page_quickstart():
    text = (ROOT / "doc" / "index.rst").read_text()
    section = text.split("Quickstart\n==========", 1)[1]
    block = section.split(".. code-block:: python\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("   "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def test_the_quickstart_is_the_same_in_the_readme_and_on_the_landing_page():
    assert readme_quickstart() == landing_page_quickstart()


def test_the_readme_quickstart_runs(tmp_path, monkeypatch):
    # A small stand-in for bibtex where the quickstart looks for it.
    X, Y = make_multilabel_classification(
        n_samples=400, n_features=60, n_classes=12, random_state=0
    )
    folder = tmp_path / "bibtex"
    folder.mkdir()
    parts = dict(X_train=X[:300], Y_train=Y[:300], X_test=X[300:], Y_test=Y[300:])
    for name, array in parts.items():
        sp.save_npz(folder / f"{name}.npz", sp.csr_matrix(array.astype(np.float32)))
    monkeypatch.setenv("SKLEARN_MACH_DATA", str(tmp_path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(readme_quickstart(), {})
    p_at_1 = float(re.fullmatch(r"P@1 = (\d\.\d{3})\n", out.getvalue()).group(1))
    # better than always answering the most frequent label
    most_frequent = Y[:300].sum(axis=0).argmax()
    assert p_at_1 > Y[300:, most_frequent].mean()


def test_load_names_every_trusted_optimizer():
    from sklearn_mach import MACHClassifier
    from sklearn_mach._persistence import TRUSTED_OPTIMIZERS

    doc = " ".join(MACHClassifier.load.__doc__.split())
    for optimizer in TRUSTED_OPTIMIZERS:
        assert optimizer.__name__ in doc, optimizer
