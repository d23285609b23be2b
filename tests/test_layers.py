"""Data flows one way through src/gdlab, as docs/DESIGN draws it, and no modules import each other.

The import graph is read from the source with ``ast``: every ``import`` and ``from ... import``,
also those inside functions (imported on first use to keep ``gdlab --help`` fast) and under
``if TYPE_CHECKING:`` (knowing a higher layer's types is depending on it too). ``from package
import name`` counts as importing the submodule ``package.name`` when there is one, else the
package. Importing a module always runs its packages' ``__init__`` first, so that is not an edge.
"""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A unit imports only itself and units of lower layers; units in one layer are
# siblings that never import each other. "gdlab" is the package's own __init__, which imports
# its subpackages by name on first use, never by an import statement.
LAYERS = (
    {"gdlab", "errors"},
    {"threads", "usercode", "comparison"},  # small helpers any layer above may use
    {"data"},
    {"models"},
    {"optim", "backprop"},
    {"gradcheck"},
    {"train"},
    {"check", "study", "verify"},  # check and verify compare with a reference; study runs the runs
    {"report", "tracking"},  # the analyzer reads study folders; tracking mirrors a running study
    {"cli"},
)

# (importer, imported) pairs allowed against the order, each with its reason. None today; an
# entry that is no longer needed fails `test_every_exception_is_still_needed`.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_names() -> dict[str, tuple[Path, bool]]:
    """Every module of gdlab: dotted name -> (file, whether it is a package's __init__)."""
    modules = {}
    for path in sorted((SOURCE / "gdlab").rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported gdlab module: line of the first such import}."""
    modules = module_names()

    def known(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, dict[str, int]] = {}
    for module, (path, is_package) in modules.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join(package + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                if target == "gdlab" or target.startswith("gdlab."):
                    imported = known(target)
                    if imported != module:
                        edges.setdefault(imported, node.lineno)
        graph[module] = edges
    return graph


def unit(module: str) -> str:
    """The top-level piece a module belongs to: gdlab.study.runner -> study, gdlab -> gdlab."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer(name: str) -> int:
    return next(index for index, units in enumerate(LAYERS) if name in units)


def upward_imports(graph) -> list[tuple[str, str, str]]:
    """(importer unit, imported unit, where) for every import that is not strictly downward."""
    found = []
    for module, edges in graph.items():
        for imported, line in edges.items():
            low, high = unit(module), unit(imported)
            if low != high and layer(high) >= layer(low):
                found.append((low, high, f"{module} imports {imported} (line {line})"))
    return found


def cycles(graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.get(module, {}):
            if imported not in index:
                visit(imported)
                lowest[module] = min(lowest[module], lowest[imported])
            elif imported in on_stack:
                lowest[module] = min(lowest[module], index[imported])
        if lowest[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return components


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_sees_imports_inside_functions_and_relative_ones(graph):
    # `gdlab run` imports the report inside the command, so that `gdlab --help` does not load it.
    assert "gdlab.report" in graph["gdlab.cli"]
    assert "gdlab.check.report" in graph["gdlab.check.command"]  # under TYPE_CHECKING, and inside check()
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_every_piece_of_gdlab_has_a_layer(graph):
    placed = set().union(*LAYERS)
    unplaced = sorted({unit(module) for module in graph} - placed)
    assert not unplaced, f"add {unplaced} to LAYERS in {Path(__file__).name}, where its imports put it"


def test_imports_go_down_the_layers_only(graph):
    wrong = [where for low, high, where in upward_imports(graph) if (low, high) not in EXCEPTIONS]
    order = " -> ".join("/".join(sorted(units)) for units in LAYERS)
    assert not wrong, f"against the layer order {order}:\n" + "\n".join(wrong)


def test_the_study_runner_never_imports_the_report(graph):
    """Runner and analyzer apart (DeepOBS): the report reads the folders a study writes."""
    into_report = [(module, imported) for module, edges in graph.items() for imported in edges
                   if unit(module) == "study" and unit(imported) == "report"]
    assert into_report == []


def test_every_exception_is_still_needed(graph):
    used = {(low, high) for low, high, _ in upward_imports(graph)}
    assert set(EXCEPTIONS) <= used, f"no longer needed, remove: {sorted(set(EXCEPTIONS) - used)}"


def test_no_modules_import_each_other(graph):
    circles = cycles(graph)
    described = [
        " <-> ".join(circle) + ": " + "; ".join(
            f"{module} imports {imported} (line {graph[module][imported]})"
            for module in circle for imported in graph[module] if imported in circle
        )
        for circle in circles
    ]
    assert not circles, "import circles:\n" + "\n".join(described)
