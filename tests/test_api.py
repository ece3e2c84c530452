"""The public surface: what doc/api.rst lists, loaded lazily, with no import cycle."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = ("sklearn_mach", "sklearn_mach.metrics", "sklearn_mach.datasets")


def documented_names():
    """Autosummary entries of doc/api.rst, per current module."""
    names, module = {}, None
    for line in (ROOT / "doc" / "api.rst").read_text().splitlines():
        match = re.match(r"\.\. currentmodule:: (\S+)", line)
        if match:
            module = match.group(1)
        elif module and re.fullmatch(r" {3}[A-Za-z_][\w.]*", line):
            names.setdefault(module, set()).add(line.strip())
    return names


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_all_is_what_the_api_page_lists(module):
    mod = __import__(module, fromlist=["__all__"])
    public = {name for name in mod.__all__ if name != "__version__"}
    public -= set(getattr(mod, "_submodules", ()))
    assert documented_names().get(module, set()) == public
    for name in public:
        assert getattr(mod, name).__module__.startswith("sklearn_mach")


def _run(code):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_submodules_load_lazily_and_privates_stay_hidden():
    out = _run(
        "import sys, warnings\n"
        "import joblib, numpy, scipy, skorch, sklearn, torch, tqdm\n"
        "before = list(warnings.filters)  # what the dependencies install\n"
        "import sklearn_mach\n"
        "print('sklearn_mach.metrics' in sys.modules)\n"
        "print(sklearn_mach.metrics.precision_at_k.__name__)\n"
        "print(sklearn_mach.datasets.make_extreme_classification.__name__)\n"
        "print(warnings.filters == before)\n"
        "print(sorted(dir(sklearn_mach)) == sorted(sklearn_mach.__all__))\n"
        "try:\n    sklearn_mach.decoding\nexcept AttributeError:\n    print('hidden')\n"
    )
    assert out.split() == [
        "False",
        "precision_at_k",
        "make_extreme_classification",
        "True",
        "True",
        "hidden",
    ]


def test_no_import_cycle_between_modules():
    package = ROOT / "sklearn_mach"
    graph = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (path.name == "__init__.py")]
                target = ".".join(base + ([node.module] if node.module else []))
                deps.add(target)
                deps.update(f"{target}.{a.name}" for a in node.names)
        graph[name] = deps
    graph = {
        name: {d for d in deps if d in graph and d != name}
        for name, deps in graph.items()
    }
    # the package __init__ re-exports: only edges between implementation modules count
    graph = {n: d - {"sklearn_mach"} for n, d in graph.items() if n != "sklearn_mach"}
    visiting, done = set(), set()

    def visit(node, path):
        if node in done:
            return
        assert node not in visiting, f"import cycle: {' -> '.join(path + [node])}"
        visiting.add(node)
        for dep in graph.get(node, ()):
            visit(dep, path + [node])
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node, [])
    assert "sklearn_mach._classifier" not in graph["sklearn_mach._persistence"]
