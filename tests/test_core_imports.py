"""The pure core must import without Ray, Redis, vLLM or torch."""

import subprocess
import sys

CORE = ["pipeline.turns", "pipeline.labels", "pipeline.prompts", "pipeline.prompter", "pipeline.metrics",
        "pipeline.label_trie", "pipeline.datasets", "pipeline.evaluation", "pipeline.predictions",
        "pipeline.cli", "pipeline.commands", "workers.engine_config", "workers.adapters",
        "pipeline.wire", "pipeline.logs", "pipeline.stream.ack_policy", "pipeline.stream.config",
        "pipeline.stream.context_store", "pipeline.stream.stream_io", "pipeline.stream.client",
        "pipeline.stream.commands", "workers.engine_pool", "workers.engine_actor", "pipeline.context",
        "pipeline.calibration", "training.config", "training.objectives", "training.batching",
        "training.checkpoints", "training.steps", "training.prefix_runner", "workers.merged_model"]
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
        "from pipeline.prompts import PromptBuilder\nfrom pipeline.labels import get_label_set\n"
        "from pipeline.turns import Turn\n"
        "print(PromptBuilder(get_label_set('meld')).build(Turn('c', 0, 'A', 'hi')).splitlines()[-1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "### Response:"
