"""Layout report of the packages: import circles between modules (imports inside functions counted), functions over N
lines (docstrings excepted), the largest modules. Usage: python scripts/layout.py [ROOT] [N=60]."""
import ast, sys, os
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
limit = int(sys.argv[2]) if len(sys.argv) > 2 else 60
packages = ["captum_diffusion", "shap_adapters", "lime_adapters"]
modules = {}
for pkg in packages:
    for path in (root / pkg).rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        modules[name] = path

def resolve(name):
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None

graph, long_functions, sizes = {}, [], {}
for name, path in modules.items():
    source = path.read_text()
    sizes[name] = source.count("\n")
    tree = ast.parse(source)
    edges = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                parts = name.split(".")
                if not path.name == "__init__.py":
                    parts = parts[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                target = resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in modules else resolve(base)
                if target and target != name:
                    edges.add(target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target and target != name:
                    edges.add(target)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            start = body[0]
            if isinstance(start, ast.Expr) and isinstance(getattr(start, "value", None), ast.Constant) and isinstance(start.value.value, str):
                doc_lines = start.end_lineno - start.lineno + 1
            else:
                doc_lines = 0
            length = node.end_lineno - node.lineno + 1 - doc_lines
            if length > limit:
                long_functions.append((length, f"{name}.{node.name}"))
    # package __init__ -> submodule edges through lazy tables are not imports
    graph[name] = edges

# strongly connected components (Tarjan), ignoring package->own submodule edges
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in graph.get(v, ()):
        if w.startswith(v + ".") or v.startswith(w + "."):
            continue  # a package and its own submodules
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in graph:
    if v not in index: strong(v)
print(f"modules: {len(modules)}, lines: {sum(sizes.values())}")
print(f"import circles: {len(sccs)}")
for c in sccs: print("  ", " <-> ".join(c))
print(f"functions over {limit} lines (docstrings excepted): {len(long_functions)}")
for length, fn in sorted(long_functions, reverse=True): print(f"  {length:4d} {fn}")
print("largest modules:")
for name, n in sorted(sizes.items(), key=lambda kv: -kv[1])[:12]: print(f"  {n:5d} {name}")
