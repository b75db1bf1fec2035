"""The package layout states the design, and dependencies point one way.

Packages, lowest first: core (errors, formats, manifest, zoo, the Model Garden build) →
converters and runtimes, side by side, neither importing the other (converters write artifacts
and manifests, runtimes read them) → bench. bench/ has no module at its top level but __init__
and __main__.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "converters", "runtimes", "bench")
# What each package may import besides itself.
ALLOWED = {"core": set(), "converters": {"core"}, "runtimes": {"core"},
           "bench": {"core", "converters", "runtimes"}}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def project_imports(path: Path) -> set[str]:
    """Every project module `path` imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def test_bench_has_no_top_level_modules():
    top = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]


def test_dependencies_point_one_way():
    wrong = []
    for name, path in modules().items():
        mine = name.split(".")[0]
        for target in project_imports(path):
            theirs = target.split(".")[0]
            if theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_no_package_level_cycles_inside_bench():
    """bench's subpackages form a graph without cycles (scenarios, results, ... never loop)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        parts = name.split(".")
        if parts[0] != "bench" or len(parts) < 2:
            continue
        source = parts[1]
        for target in project_imports(path):
            tparts = target.split(".")
            if tparts[0] == "bench" and len(tparts) > 1 and tparts[1] != source:
                graph.setdefault(source, set()).add(tparts[1])

    def cycle_from(node, stack):
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                return stack[stack.index(nxt):] + [nxt]
            found = cycle_from(nxt, stack + [nxt])
            if found:
                return found
        return None

    for start in sorted(graph):
        assert cycle_from(start, [start]) is None, " -> ".join(cycle_from(start, [start]))


def test_runtimes_import_only_their_own_engine():
    engines = {"tensorflow": "runtimes.tensorflow", "tf_keras": "runtimes.tensorflow",
               "onnxruntime": "runtimes.onnxruntime", "ai_edge_litert": "runtimes.litert",
               "tensorrt": "runtimes.tensorrt", "openvino": "runtimes.openvino"}
    for name, path in modules().items():
        if not name.startswith("runtimes."):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            imported = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for module in imported:
                owner = engines.get(module.split(".")[0])
                assert owner is None or name == owner, \
                    f"{name} imports {module}"


def test_every_runtime_fills_in_the_one_open_and_none_replaces_it():
    """Session.open is the one loading sequence (format, file, load, I/O check, close on
    failure): each exported-format runtime fills in `_load` and `declared_io`, and a class
    that overrides `open` is refused when it is defined."""
    from core.formats import FORMATS
    from runtimes.base import Session
    from runtimes.registry import RUNTIME_SESSIONS

    loading = {spec.runtime for spec in FORMATS.values() if spec.exported}
    for runtime, target in RUNTIME_SESSIONS.items():
        module, name = target.split(":")
        cls = getattr(importlib.import_module(module), name)
        assert cls.open.__func__ is Session.open.__func__, runtime
        # The reference's runtime builds its model from a config; one that loads artifacts
        # has nothing to build and keeps the refusing default.
        builds = cls.from_config.__func__ is not Session.from_config.__func__
        assert builds == (runtime not in loading), runtime
        if runtime in loading:
            assert cls._load.__func__ is not Session._load.__func__, runtime
            assert cls.declared_io is not Session.declared_io, runtime
            assert cls.artifact_kind != Session.artifact_kind, runtime
    with pytest.raises(TypeError, match="overrides Session.open"):
        type("Replaces", (Session,), {"open": classmethod(lambda cls, *args, **kw: None)})


def test_the_architecture_document_names_every_module():
    """docs/architecture.md is drawn from this tree: each module's file is named there (a CLI
    verb and a report section by its name), so a module added without a line in the map
    fails here."""
    import re

    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for name, path in modules().items():
        if path.name in ("__init__.py", "__main__.py"):
            continue
        listed = name.startswith(("bench.cli.", "bench.report.sections."))
        wanted = path.stem if listed else path.name
        if not re.search(rf"(?<![\w/.]){re.escape(wanted)}\b", text):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []
