"""The pure core must import without Ray, Redis, vLLM or torch; imports go one way, with no cycles."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CORE = ["pipeline.core.turns", "pipeline.core.labels", "pipeline.core.prompts", "pipeline.core.prompter", "pipeline.core.metrics",
        "pipeline.core.label_trie", "pipeline.core.datasets", "pipeline.core.evaluation", "pipeline.core.predictions",
        "pipeline.cli", "pipeline.core.flags", "pipeline.cli.configs", "pipeline.cli.preflight",
        "workers.engine_config", "workers.adapters", "pipeline.stream.redis_checks", "pipeline.stream.demo",
        "pipeline.core.wire", "pipeline.core.logs", "pipeline.stream.ack_policy", "pipeline.stream.config",
        "pipeline.stream.context_store", "pipeline.stream.stream_io", "pipeline.stream.client",
        "workers.engine_pool", "workers.engine_actor", "pipeline.core.context",
        "pipeline.core.calibration", "training.config", "training.objectives", "training.batching",
        "training.checkpoints", "training.steps", "training.prefix_runner", "workers.merged_model",
        "pipeline.alerts.rules", "pipeline.alerts.episodes", "pipeline.alerts.config", "pipeline.core.config_fields",
        "pipeline.watch.negative", "pipeline.watch.board", "pipeline.watch.config",
        "pipeline.core.video_policy", "pipeline.core.redaction", "pipeline.stream.forget",
        "pipeline.core.speakers", "pipeline.core.rollout", "pipeline.cli.adapters"]
HEAVY = ["vllm", "ray", "redis", "torch", "transformers", "av"]


def test_core_imports_without_heavy_packages():
    code = (
        f"import sys\nfor m in {CORE!r}: __import__(m)\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\nprint(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy packages imported by the core: {out.stdout}"


def test_core_imports_when_heavy_packages_are_missing():
    # A finder that refuses the heavy packages, as on a machine without them.
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        f"    def find_spec(self, name, path, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {CORE!r}: __import__(m)\n"
        "from pipeline.core.prompts import PromptBuilder\nfrom pipeline.core.labels import get_label_set\n"
        "from pipeline.core.turns import Turn\n"
        "print(PromptBuilder(get_label_set('meld')).build(Turn('c', 0, 'A', 'hi')).splitlines()[-1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "### Response:"


def _import_graph() -> dict[str, set[str]]:
    """Every project module and the project modules it imports (at any level, deferred included)."""
    modules = {}
    for path in [*REPO.glob("pipeline/**/*.py"), *REPO.glob("workers/**/*.py"), *REPO.glob("training/**/*.py")]:
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps.update(owner(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    deps.add(sub if sub in modules else owner(node.module))
        graph[name] = {d for d in deps if d and d != name}
    return graph


# Each layer imports only from itself and the layers before it; the folders show which is which.
LAYERS = (
    ("core", ("pipeline.core", "pipeline")),
    ("workers", ("workers",)),
    ("training", ("training",)),
    ("flows", ("pipeline.stream", "pipeline.labelling", "pipeline.alerts", "pipeline.watch")),
    ("commands", ("pipeline.cli", "pipeline.benchmarks")),
)


def _layer(module: str) -> int:
    """The index in LAYERS of the layer `module` belongs to (the longest matching package wins)."""
    best, rank = -1, 0
    for i, (_, packages) in enumerate(LAYERS):
        for p in packages:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    return rank


def back_up_imports(graph: dict[str, set[str]]) -> list[str]:
    """`module (layer) -> dependency (layer)` for every import of a later layer."""
    return [f"{m} ({LAYERS[_layer(m)][0]}) -> {d} ({LAYERS[_layer(d)][0]})"
            for m, deps in sorted(graph.items()) for d in sorted(deps) if _layer(d) > _layer(m)]


def test_every_module_is_in_a_named_layer():
    assert {LAYERS[_layer(m)][0] for m in _import_graph()} == {name for name, _ in LAYERS}
    assert LAYERS[_layer("pipeline.core.wire")][0] == "core"
    assert LAYERS[_layer("pipeline.stream.worker")][0] == "flows"


def test_imports_go_one_way_core_workers_training_flows_commands():
    assert back_up_imports(_import_graph()) == []


def test_a_planted_back_up_import_is_named():
    graph = _import_graph()
    graph["workers.engine"] = graph["workers.engine"] | {"pipeline.labelling.manifest"}
    graph["pipeline.core.prompts"] = graph["pipeline.core.prompts"] | {"workers.engine"}
    assert back_up_imports(graph) == [
        "pipeline.core.prompts (core) -> workers.engine (workers)",
        "workers.engine (workers) -> pipeline.labelling.manifest (flows)",
    ]


def test_no_import_cycles():
    graph = _import_graph()
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for dep in sorted(graph[module]):
            assert seen.get(dep) != 1, "import cycle: " + " -> ".join(path[path.index(dep):] + [dep])
            if dep not in seen:
                visit(dep, path + [dep])
        seen[module] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])


def test_the_cli_loads_every_module_once():
    code = ("import sys, pipeline.cli\n"
            "files = [m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)]\n"
            "mine = [f for f in files if f.startswith(sys.argv[1])]\n"
            "assert len(mine) == len(set(mine)), sorted(f for f in mine if mine.count(f) > 1)\n"
            "print(len(mine))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 10
