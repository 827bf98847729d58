"""The product as a new user gets it: the default model with the shipped adapter, merged on a CPU."""

import json

import pytest

from workers.model_store import default_adapter_dir

pytestmark = pytest.mark.engine


@pytest.mark.skipif(default_adapter_dir() is None, reason="no adapter shipped in training/default_adapter/")
def test_eval_without_flags_serves_the_shipped_adapter_merged_and_it_labels_better(run_cli, tmp_path):
    reports = {}
    for name, extra in (("shipped", ()), ("bare", ("--no-adapter",))):
        path = tmp_path / f"{name}.json"
        result = run_cli("eval", "--dataset", "meld", "--split", "test", "--limit", "80", "--report", str(path),
                         *extra, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        reports[name] = json.loads(path.read_text())
    shipped, bare = reports["shipped"], reports["bare"]
    assert shipped["adapter"] == "default" and shipped["merged"] is True
    assert bare["adapter"] is None and bare["merged"] is False
    assert shipped["weighted_f1"] > bare["weighted_f1"] + 0.1, (shipped["weighted_f1"], bare["weighted_f1"])
    from workers.adapters import read_adapter_meta

    assert shipped["temperature"] == read_adapter_meta(default_adapter_dir()).temperatures["meld"]
    assert 0 <= shipped["ece"] <= 1 and bare["temperature"] == 1.0
