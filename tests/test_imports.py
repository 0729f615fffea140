"""The house rule on imports, read from the source: ``analysis`` never imports ``train``,
``study`` or what sits above them, and no room of ``handlib/`` imports one that imports it back."""
import ast
from collections import defaultdict
from pathlib import Path

import handlib

ROOT = Path(handlib.__file__).parent
ABOVE_ANALYSIS = {"train", "study", "report", "explorer", "bench"}


def room(module: str) -> str:
    """handlib.train.loop -> 'train'; handlib.study -> 'study'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph(root: Path = ROOT) -> dict[str, dict[str, set[str]]]:
    """room -> imported room -> the files that import it (static imports, also inside functions)."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for f in root.rglob("*.py"):
        src = ".".join(("handlib",) + f.relative_to(root).with_suffix("").parts)
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "handlib":
                mods = [f"{node.module}.{a.name}" for a in node.names] if node.module == "handlib" else [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names if a.name.split(".")[0] == "handlib"]
            else:
                continue
            for m in mods:
                if room(m) and room(m) != room(src):
                    graph[room(src)][room(m)].add(str(f.relative_to(root)))
    return graph


def test_analysis_never_imports_train_or_study():
    bad = {r: sorted(fs) for r, fs in import_graph()["analysis"].items() if r in ABOVE_ANALYSIS}
    assert not bad, f"analysis imports {bad}"


def test_no_two_rooms_import_each_other():
    g = import_graph()
    both = sorted({tuple(sorted((a, b))) for a in g for b in g[a] if a in g.get(b, {})})
    assert not both, {f"{a} <-> {b}": (sorted(g[a][b]), sorted(g[b][a])) for a, b in both}


def test_the_walker_sees_every_kind_of_import(tmp_path):
    # the rules rest on the walker: a deferred import, ``from handlib import x`` and plain
    # ``import handlib.x`` all count; third-party modules and a room's own imports do not
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "a.py").write_text(
        "import numpy\nfrom handlib.analysis import b\n\ndef f():\n    from handlib.train.loop import train\n")
    (tmp_path / "analysis" / "b.py").write_text("from handlib import study\nimport handlib.models.pose\n")
    g = import_graph(tmp_path)
    assert {r: sorted(fs) for r, fs in g["analysis"].items()} == {
        "train": ["analysis/a.py"], "study": ["analysis/b.py"], "models": ["analysis/b.py"]}
