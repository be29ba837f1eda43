"""The package's layout: no import cycles (imports inside functions included); the kernels import only
the engine's storage formats; a CPU generation (R-KV and quantized KV included) imports no kernel
module, each of which needs Triton (a CPU installation need not have it)."""

import ast
import subprocess
import sys
from pathlib import Path

import membudget

PACKAGE = Path(membudget.__file__).parent


def module_graph() -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports, wherever the import stands."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            modules[".".join(parts[:-1])] = (path, parts[:-1])
        else:
            modules[".".join(parts)] = (path, parts[:-1])
    graph = {name: set() for name in modules}
    for name, (path, package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                found = [
                    f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names
                ]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = module_graph()
    assert "membudget.engine.kernels.attention" in graph["membudget.engine.kernels.quant_attention"]
    assert cycles(graph) == []


def test_kernels_import_only_storage_formats_of_the_engine():
    graph = module_graph()
    allowed = {"membudget.engine.wquant", "membudget.engine.kvquant"}
    for name, imports in graph.items():
        if name.startswith("membudget.engine.kernels"):
            outside = {m for m in imports if not m.startswith("membudget.engine.kernels")}
            assert outside <= allowed, (name, outside)


def test_the_cpu_path_imports_no_kernel():
    code = (
        "import sys\n"
        "from tests.conftest import tiny_model, tiny_tokenizer\n"
        "from membudget.engine.generate import GenerationConfig, Generator\n"
        "from membudget.engine.model import Decoder\n"
        "from membudget.engine.sampling import SamplingParams\n"
        "from membudget.spec import ModelSpec\n"
        "import membudget.cli, membudget.sweep.runner\n"
        "model = tiny_model('qwen3', head_dim=64)\n"
        "gen = Generator(Decoder.from_hf(model, ModelSpec.from_config(model.config.to_dict())), tiny_tokenizer())\n"
        "sampling = SamplingParams(temperature=1.0, top_k=20)\n"
        "config = GenerationConfig(budgets=(160,), samples=2, answer_tokens=3, answer_prefix='w7', "
        "budget_forcing=False, sampling=sampling, kv='rkv:16+quant:4')\n"
        "gen.generate([1, 10, 11, 12], config)\n"
        "print(sorted(m for m in sys.modules if m.startswith('membudget.engine.kernels')))\n"
    )
    root = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"  # no kernel module (each imports Triton)


def package_names(tree: ast.AST) -> set[str]:
    """Names a script binds to membudget's modules or their objects (import ... as / from ... import)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("membudget"):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if a.name.startswith("membudget") and a.asname}
    return names


def root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def reassignments(source: str) -> list[str]:
    """Where a script changes the package's state: an assignment to an attribute or item of something
    it imported from membudget, or an update()/clear()/pop() of it."""
    tree = ast.parse(source)
    names, found = package_names(tree), []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            targets = [t for tgt in targets for t in (tgt.elts if isinstance(tgt, ast.Tuple) else [tgt])]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("update", "clear", "pop", "setdefault"):
                targets = [node.func.value]
        for t in targets:
            if (
                isinstance(t, ast.Attribute | ast.Subscript)
                and root(t) in names
                or (isinstance(node, ast.Call) and root(t) in names)
            ):
                found.append(f"line {node.lineno}: {ast.unparse(t)}")
    return found


def test_the_reassignment_checker_finds_one():
    script = "from membudget.engine.kernels import launch\nfrom membudget.x import TABLE\n"
    assert reassignments(
        script + "launch.PDL = False\nTABLE[4] = 1\nTABLE.update(a=1)\nx = launch.PDL\n"
    ) == [
        "line 3: launch.PDL",
        "line 4: TABLE[4]",
        "line 5: TABLE",
    ]


def test_no_script_reassigns_the_packages_variables():
    """Launch choices are values passed in, not module variables that a benchmark or test turns."""
    scripts = [*PACKAGE.parent.parent.joinpath("bench").glob("*.py"), *Path(__file__).parent.rglob("*.py")]
    found = {p.name: r for p in scripts if p.name != "test_layout.py" and (r := reassignments(p.read_text()))}
    assert found == {}
