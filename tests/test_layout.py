"""The house's layout: imports only point down the layers the README draws, and every public definition says what
it does."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "dar_lib"

#: The layers, bottom first (the README's layout section). A module may import from its own layer or
#: any layer below; importing from a layer above is an upward arrow.
LAYERS: list[tuple[str, ...]] = [
    ("dar_lib", "dar_lib.errors", "dar_lib.settings", "dar_lib.cachekeys", "dar_lib.store", "dar_lib.argtypes",
     "dar_lib.redact", "dar_lib.atomic", "dar_lib.weightfiles"),   # ground floor
    ("dar_lib.fusion_weights", "dar_lib.fuse", "dar_lib.retrieve", "dar_lib.metrics",
     "dar_lib.evalsettings"),                                                                   # the math, the settings
    ("dar_lib.benchmarks",),                                                                    # data
    ("dar_lib.toymodels",),                                                                     # the toy wing
    ("dar_lib.models",),                                                                        # one factory
    ("dar_lib.testing",),                         # stand-in models and helpers: tests, the rehearsal, measure/
    ("dar_lib.profiles",),                                                                      # the parameter table
    ("dar_lib.corpus",),                                                                        # the corpus stage
    ("dar_lib.pipeline",),                                                                      # Algorithm 1
    ("dar_lib.evaluate", "dar_lib.protocols", "dar_lib.stats", "dar_lib.claims", "dar_lib.plotting", "dar_lib.explore",
     "dar_lib.live", "dar_lib.status"),
    ("dar_lib.chapters", "dar_lib.distributed", "dar_lib.rehearsal"),
    ("dar_lib.book", "dar_lib.cli", "dar_lib.live_server"),                                     # entry points
]


def _modules() -> dict[str, Path]:
    mods = {}
    for path in LIB.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _layer(module: str) -> int:
    best, depth = None, -1
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS (and the README's layout section)"
    return best


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The module of ``mods`` a dotted name lives in (``dar_lib.benchmarks.TOY`` -> ``dar_lib.benchmarks``)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _import_targets(node: ast.AST, module: str, is_pkg: bool) -> list[str]:
    """The dotted names an import statement in ``module`` loads: an ``import``'s names; a ``from`` import's base
    (its package runs first), then ``base.<name>`` for each name (relative imports made absolute)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_pkg else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _imports(mods: dict[str, Path]) -> set[tuple[str, str]]:
    """module -> module edges inside dar_lib, top-level and function-level imports alike."""
    edges = set()
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            for t in _import_targets(node, name, path.name == "__init__.py"):
                r = _resolve(t, mods) if t.startswith("dar_lib") else None
                if r and r != name:
                    edges.add((name, r))
    return edges


def test_imports_only_point_down_and_form_no_cycle():
    mods = _modules()
    edges = _imports(mods)
    upward = sorted(f"{a} -> {b}" for a, b in edges if _layer(b) > _layer(a))
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
    # no cycle among modules, counting a package's __init__ as a module like any other (as
    # ../shared/tools/import_layers.py does): a child importing a name from its package's __init__
    # while that __init__ imports the child is a cycle
    graph = {m: {b for a, b in edges if a == m} for m in mods}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


#: Libraries that take seconds to import: a torch-free module loads them only inside the function that needs them.
HEAVY_LIBRARIES = ("torch", "transformers", "diffusers", "pandas")


def _module_level_imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> what its body imports when the module is imported (function bodies left out): dar_lib modules
    (with their parent packages) and top-level library names."""
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        found: set[str] = set()

        def visit(body):
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for t in _import_targets(node, name, path.name == "__init__.py"):
                    if not t.startswith("dar_lib"):
                        found.add(t.split(".")[0])
                        continue
                    r = _resolve(t, mods)
                    while r:  # importing a.b.c runs a and a.b first
                        found.add(r)
                        r = r.rpartition(".")[0] if "." in r else None
                if isinstance(node, (ast.ClassDef, ast.If, ast.Try, ast.With)):  # bodies that run on import
                    for field in ("body", "orelse", "finalbody", "handlers"):
                        visit(getattr(node, field, None) or [])
                elif isinstance(node, ast.ExceptHandler):
                    visit(node.body)

        visit(ast.parse(path.read_text()).body)
        found.discard(name)
        out[name] = found
    return out


def _heavy(mods: dict[str, Path]) -> set[str]:
    """The dar_lib modules whose import loads one of :data:`HEAVY_LIBRARIES` (directly or through another)."""
    imports = _module_level_imports(mods)
    heavy = {m for m, found in imports.items() if found & set(HEAVY_LIBRARIES)}
    while True:
        more = {m for m, found in imports.items() if m not in heavy and found & heavy}
        if not more:
            return heavy
        heavy |= more


def test_function_level_imports_only_defer_torch():
    """Imports sit at the top of a module, where the import graph can be read; a function-level import of a
    dar_lib module is only for keeping a torch-free module (the `dar` parser, the evaluation's settings) from
    loading torch, transformers or diffusers on import."""
    mods = _modules()
    heavy = _heavy(mods)
    assert {"dar_lib.models.base", "dar_lib.pipeline"} <= heavy and "dar_lib.cli" not in heavy
    misplaced = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        local = {n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in local:
            targets = _import_targets(node, name, path.name == "__init__.py")
            for t in targets[1:] if isinstance(node, ast.ImportFrom) else targets:  # the names it binds
                t = _resolve(t, mods) if t.startswith("dar_lib") else None
                if t is None:
                    continue
                if name in heavy or t not in heavy:
                    misplaced.append(f"{path.relative_to(REPO)}:{node.lineno} imports {t} inside a function")
    assert not misplaced, "import these at module level:\n" + "\n".join(sorted(set(misplaced)))


def test_the_toy_wing_leans_one_way():
    edges = _imports(_modules())
    assert not [e for e in edges if e[0].startswith("dar_lib.toymodels") and e[1].startswith("dar_lib.models")]


def test_every_public_definition_has_a_docstring():
    missing = []
    for path in sorted(LIB.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if not ast.get_docstring(tree):
            missing.append(f"{path.relative_to(REPO)} (module)")

        def visit(node, prefix):
            for n in node.body:
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith("_"):
                    if not ast.get_docstring(n):
                        missing.append(f"{path.relative_to(REPO)}:{n.lineno} {prefix}{n.name}")
                    if isinstance(n, ast.ClassDef):
                        visit(n, f"{prefix}{n.name}.")

        visit(tree, "")
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)


def test_the_readme_layout_names_every_top_level_module():
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[: layout.index("\n## ", 4)] if "\n## " in layout[4:] else layout
    for path in sorted(LIB.glob("*.py")):
        if path.name != "__init__.py":
            assert path.stem in layout, f"README's layout section does not mention dar_lib/{path.name}"
    for folder in sorted(p for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").is_file()):
        assert f"{folder.name}/" in layout, f"README's layout section does not mention dar_lib/{folder.name}/"
    assert "measure/" in layout and "benchmarks/" in layout
