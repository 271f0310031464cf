"""Check the house rules of ``app/`` against the layer table in the README.

The README's "Architecture" section holds a table whose rows are the layers, top first; the
first cell of a row names the layer's places in backticks (a folder ends with ``/``, a module
ends with ``.py``). A module belongs to the row naming its most specific place. This script fails
(exit 1, one line per finding) on:

- an import cycle anywhere in ``app/`` (every import counts: module level, inside functions,
  under ``if TYPE_CHECKING:``; importing ``a.b.c`` also imports the packages ``a`` and ``a.b``);
- an import that goes against the layer order (a module may import its own layer and the layers
  below it, never one above);
- a Qt binding (PySide6, shiboken6, PyQt) imported anywhere outside ``app/gui/``;
- a module over 600 lines;
- a module of ``app/`` that no row of the table names (the table must stay true).

Usage: ``python tools/check_architecture.py [--root DIR]`` (DIR holds ``app/`` and
``README.md``; default: this repository).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINES = 600
QT_ROOTS = ("PySide6", "PySide2", "shiboken6", "shiboken2", "PyQt5", "PyQt6")
GUI_PLACE = "app/gui/"


@dataclass
class Module:
    name: str  # dotted, e.g. app.core.dicom.header ("app.core" for app/core/__init__.py)
    path: Path  # relative to the root
    lines: int
    imports: list[tuple[str, int]] = field(default_factory=list)  # (dotted target, line)


@dataclass(frozen=True)
class Layer:
    index: int  # 0 = top
    places: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.places[0] + (" and the rest of its row" if len(self.places) > 1 else "")


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(mod: Module, level: int, target: str | None) -> str:
    base = mod.name.split(".")
    if mod.path.name != "__init__.py":
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def collect(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((root / "app").rglob("*.py")):
        rel = path.relative_to(root)
        text = path.read_text(encoding="utf-8")
        mod = Module(module_name(rel), rel, len(text.splitlines()))
        tree = ast.parse(text, filename=str(rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mod.imports += [(alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = _resolve_relative(mod, node.level, node.module)
                # "from pkg import name": name may be a submodule or an attribute of pkg.
                mod.imports.append((base, node.lineno))
                mod.imports += [(f"{base}.{alias.name}", node.lineno) for alias in node.names
                                if alias.name != "*"]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module" and node.args
                  and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                mod.imports.append((node.args[0].value, node.lineno))
        modules[mod.name] = mod
    return modules


def edges(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """Module → {imported module of app/: first line}; ancestors of a target count too."""
    out: dict[str, dict[str, int]] = {name: {} for name in modules}
    for mod in modules.values():
        for target, line in mod.imports:
            parts = target.split(".")
            for n in range(1, len(parts) + 1):
                dotted = ".".join(parts[:n])
                if dotted in modules and dotted != mod.name:
                    out[mod.name].setdefault(dotted, line)
    return out


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def read_layers(readme: Path) -> list[Layer]:
    """The rows of the first table in the README's "Architecture" section, top first."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"^## Architecture\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not match:
        raise SystemExit(f"{readme}: no '## Architecture' section")
    layers: list[Layer] = []
    in_table = False
    for line in match.group(1).splitlines():
        if not line.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        first = line.strip().strip("|").split("|")[0]
        if set(first.strip()) <= set("-: "):
            continue
        places = tuple(re.findall(r"`([^`]+)`", first))
        if places and all(p.startswith("app/") for p in places):
            layers.append(Layer(len(layers), places))
    if not layers:
        raise SystemExit(f"{readme}: the Architecture section has no layer table")
    return layers


def layer_of(path: Path, layers: list[Layer]) -> Layer | None:
    rel = path.as_posix()
    best: tuple[int, Layer] | None = None
    for layer in layers:
        for place in layer.places:
            hit = rel == place if place.endswith(".py") else rel.startswith(place)
            if hit and (best is None or len(place) > best[0]):
                best = (len(place), layer)
    return best[1] if best else None


def check(root: Path) -> list[str]:
    modules = collect(root)
    graph = edges(modules)
    layers = read_layers(root / "README.md")
    findings: list[str] = []
    for component in cycles(graph):
        ties = [f"{a} -> {b} (line {graph[a][b]})" for a in component for b in sorted(graph[a])
                if b in component]
        findings.append(f"import cycle: {', '.join(component)}: " + "; ".join(ties))
    where = {name: layer_of(mod.path, layers) for name, mod in modules.items()}
    for name, mod in sorted(modules.items()):
        layer = where[name]
        if layer is None:
            findings.append(f"{mod.path}: not named by any row of the README's layer table")
            continue
        upward = {target: line for target, line in graph[name].items()
                  if (other := where[target]) is not None and other.index < layer.index}
        for target, line in sorted(upward.items(), key=lambda item: (item[1], item[0])):
            if any(t.startswith(target + ".") and upward[t] == line for t in upward):
                continue  # the package of a module named on the same line
            findings.append(
                f"{mod.path}:{line}: imports {target} ({where[target].label}), a layer above "
                f"its own ({layer.label})")
        if not mod.path.as_posix().startswith(GUI_PLACE):
            for target, line in mod.imports:
                if target.split(".")[0] in QT_ROOTS:
                    findings.append(f"{mod.path}:{line}: imports {target}; Qt belongs in "
                                    f"{GUI_PLACE} only")
                    break
        if mod.lines > MAX_LINES:
            findings.append(f"{mod.path}: {mod.lines} lines (at most {MAX_LINES})")
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the folder holding app/ and README.md (default: this repository)")
    args = parser.parse_args(argv)
    findings = check(args.root)
    for line in findings:
        print(line)
    if findings:
        print(f"{len(findings)} finding(s)", file=sys.stderr)
        return 1
    count = sum(1 for _ in (args.root / "app").rglob("*.py"))
    print(f"architecture: {count} modules, no cycle, layer order kept, Qt only in {GUI_PLACE}, "
          f"none over {MAX_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
