"""The package's import graph, read from the source: no cycles, no private names across modules, layers.

Every `import` and `from ... import` of a kfcn module counts, also those inside functions
(kfcn defers heavy imports into functions; a cycle hidden there is still a knot a maintainer
must untie before moving either module).
"""

import ast
from pathlib import Path

import kfcn

PACKAGE = Path(kfcn.__file__).parent
# The package's layers, lowest first: a module imports only from its own layer or those below (never
# upward), so each layer can be read, tested and changed knowing only what lies under it. The root
# package `kfcn` (lazy, it imports nothing eagerly) may be imported from anywhere.
FOUNDATION = {"arguments", "arrays", "atomic", "image_io", "initializers", "layers", "losses", "metrics"}
FOUNDATION |= {"finite_weights", "names", "optional", "samples", "startup", "targets"}
LAYERS = [
    FOUNDATION,
    {"analysis", "evaluation", "instances", "recipes", "rendering", "saving"},
    {"batch_norm", "checkpoints", "models"},
    {"data", "export"},
    {"inference"},  # engine="litert" runs export's TFLite conversion
    {"distribute", "training"},
    {"cli"},
    {"__main__"},
]
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def _module_name(path):
    parts = ["kfcn", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(name, path):
    """(imported module, imported name or None) for every kfcn import in the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "kfcn"]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(part for part in (base, node.module) if part)
            if source.split(".")[0] != "kfcn":
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append((submodule, None) if submodule in MODULES else (source, alias.name))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph):
    state, stack, cycles = {}, [], []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target, _ in graph[module]:
            if target not in graph:
                continue
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module)
    return cycles


def _top(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kfcn"


def test_the_graph_is_read_from_every_module():
    # The reader itself: it finds imports at module level, in functions, relative and absolute.
    assert any(target == "kfcn.startup" for target, _ in GRAPH["kfcn"])
    assert any(target == "kfcn.checkpoints" for target, _ in GRAPH["kfcn.training"])
    assert len(MODULES) > 50 and all(name.startswith("kfcn") for name in MODULES)
    assert _cycles({"a": [("b", None)], "b": [("c", None)], "c": [("a", None)]}) == [["a", "b", "c", "a"]]


def test_no_import_cycles_between_kfcn_modules():
    cycles = [" -> ".join(cycle) for cycle in _cycles(GRAPH)]
    assert not cycles, "import cycles (move what both need into a module of its own):\n" + "\n".join(cycles)


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{module} imports {source}.{name}"
        for module, imports in GRAPH.items()
        for source, name in imports
        if name and name.startswith("_") and not name.startswith("__") and source != module
    ]
    # A private module (`kfcn.layers._checks`) serves its own package only.
    private += [
        f"{module} imports {source}"
        for module, imports in GRAPH.items()
        for source, _ in imports
        if any(part.startswith("_") and not part.startswith("__") for part in source.split("."))
        and not module.startswith(source.rpartition(".")[0] + ".")
    ]
    assert not private, "\n".join(private)


def test_every_package_has_a_layer():
    packages = {_top(module) for module in MODULES} - {"kfcn"}
    assert packages == set(RANK), f"place these in LAYERS: {sorted(packages - set(RANK))}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = sorted(
        f"{module} (layer {RANK[_top(module)]}) imports {source} (layer {RANK[_top(source)]})"
        for module, imports in GRAPH.items()
        for source, _ in imports
        if _top(module) != "kfcn" and _top(source) != "kfcn" and RANK[_top(source)] > RANK[_top(module)]
    )
    assert not upward, "\n".join(upward)


def test_the_layer_check_finds_an_upward_import():
    # The check itself, on a made-up graph: a layer (models) importing the command line is found.
    graph = {"kfcn.models.unet": [("kfcn.cli.train", None)], "kfcn.cli.train": [("kfcn.models.unet", None)]}
    upward = [(m, s) for m, imports in graph.items() for s, _ in imports if RANK[_top(s)] > RANK[_top(m)]]
    assert upward == [("kfcn.models.unet", "kfcn.cli.train")]


def test_only_the_entry_point_imports_the_command_line():
    importers = sorted(
        module
        for module, imports in GRAPH.items()
        if _top(module) != "cli"
        for source, _ in imports
        if _top(source) == "cli"
    )
    assert importers == ["kfcn.__main__"]
