"""The control messages and the canary rule (pure: no Redis, no engine)."""

from __future__ import annotations

import msgpack
import pytest

from pipeline.core.rollout import RolloutRefused, RolloutState, canary_bucket
from pipeline.core.wire import PAYLOAD, ControlMessage, MalformedMessage


def test_control_messages_round_trip():
    for message in (ControlMessage("load", "v2", "/models/adapters/v2", by="ann", at=1.5, digest="abc"),
                    ControlMessage("default", "v2", share=0.3), ControlMessage("unload", "v1")):
        assert ControlMessage.parse(message.encode()) == message


@pytest.mark.parametrize("body, reason", [
    (b"\xc1", "payload is not msgpack"),
    (msgpack.packb([1, 2]), "expected a map"),
    (msgpack.packb({"op": "drop", "name": "x"}), "unknown op 'drop'"),
    (msgpack.packb({"op": "load", "name": "x"}), "missing field 'path'"),
    (msgpack.packb({"op": "load", "name": "../x", "path": "/a"}), "is not 1 to 64 letters"),
    (msgpack.packb({"op": "load", "name": "base", "path": "/a"}), "reserved"),
    (msgpack.packb({"op": "load", "name": "x", "path": "/a\nb"}), "control characters"),
    (msgpack.packb({"op": "default", "name": "x", "share": 1.5}), "share must be a number in (0, 1]"),
    (msgpack.packb({"op": "default", "name": "x", "share": True}), "share must be"),
])
def test_malformed_control_messages_say_why(body, reason):
    with pytest.raises(MalformedMessage, match=None) as e:
        ControlMessage.parse({PAYLOAD: body})
    assert reason in str(e.value)


def test_a_name_stands_for_one_set_of_files_for_good():
    state = RolloutState.started_with({"v1": ("/r/v1", "d1")}, "v1")
    state = state.apply(ControlMessage("load", "v2", "/r/v2"), "d2")
    assert state.apply(ControlMessage("load", "v2", "/r/v2"), "d2") is state  # replayed: unchanged
    with pytest.raises(RolloutRefused, match="already loaded with other files"):
        state.apply(ControlMessage("load", "v2", "/r/v2-retrained"), "d3")
    with pytest.raises(RolloutRefused, match="already loaded with other files"):
        state.apply(ControlMessage("load", "v1", "/r/elsewhere"), "d9")
    state = state.apply(ControlMessage("default", "v2"))
    state = state.apply(ControlMessage("unload", "v1"))
    with pytest.raises(RolloutRefused, match="already loaded with other files"):  # unloaded, still retired
        state.apply(ControlMessage("load", "v1", "/r/v1-new"), "d4")
    assert state.apply(ControlMessage("load", "v1", "/r/v1"), "d1").adapters["v1"] == ("/r/v1", "d1")


def test_default_and_unload_are_refused_when_they_cannot_apply():
    state = RolloutState.started_with({"v1": ("/r/v1", "d1")}, "v1").apply(ControlMessage("load", "v2", "/r"), "d2")
    with pytest.raises(RolloutRefused, match="'v3' is not loaded"):
        state.apply(ControlMessage("default", "v3"))
    with pytest.raises(RolloutRefused, match="is the default"):
        state.apply(ControlMessage("unload", "v1"))
    canary = state.apply(ControlMessage("default", "v2", share=0.3))
    with pytest.raises(RolloutRefused, match="is the canary"):
        canary.apply(ControlMessage("unload", "v2"))
    with pytest.raises(RolloutRefused, match="already the default"):
        canary.apply(ControlMessage("default", "v1", share=0.5))
    assert canary.apply(ControlMessage("default", "v1")).canary is None  # the canary ended, v1 stays


def test_the_canary_takes_its_share_of_conversations_and_keeps_each_on_one_adapter():
    state = RolloutState.started_with({"v1": ("/a", "1"), "v2": ("/b", "2")}, "v1")
    state = state.apply(ControlMessage("default", "v2", share=0.3))
    conversations = [f"call-{i}" for i in range(20_000)]
    picks = {c: state.adapter_for(c) for c in conversations}
    share = sum(p == "v2" for p in picks.values()) / len(picks)
    assert abs(share - 0.3) < 0.02, share
    assert all(state.adapter_for(c) == picks[c] for c in conversations[:1000])  # stable
    # Raising the share only adds conversations: none that had the canary goes back.
    wider = state.apply(ControlMessage("default", "v2", share=0.6))
    assert all(wider.adapter_for(c) == "v2" for c, p in picks.items() if p == "v2")
    assert canary_bucket("call-1") == canary_bucket("call-1") and 0 <= canary_bucket("x") < 1


def test_folders_outside_the_root_or_linking_out_are_refused(tmp_path, tiny_adapter_files):
    from pipeline.core.errors import AdapterError
    from workers.adapters import check_rollout_adapter

    root = tmp_path / "root"
    root.mkdir()
    inside = tiny_adapter_files(root / "v1")
    assert check_rollout_adapter("v1", inside, root, 16).path == str(inside.resolve())
    outside = tiny_adapter_files(tmp_path / "elsewhere")
    (root / "sneaky").symlink_to(outside, target_is_directory=True)
    linked = tiny_adapter_files(root / "linked")
    (linked / "adapter_model.safetensors").unlink()
    (linked / "adapter_model.safetensors").symlink_to(outside / "adapter_model.safetensors")
    for path, reason in ((outside, "is outside --adapters-root"), (root / "sneaky", "is outside --adapters-root"),
                         (root / ".." / "elsewhere", "is outside --adapters-root"),
                         (linked, "links outside --adapters-root"), (root / "missing", "does not exist")):
        with pytest.raises(AdapterError) as e:
            check_rollout_adapter("x", path, root, 16)
        assert reason in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(AdapterError, match="no --adapters-root is set"):
        check_rollout_adapter("x", inside, None, 16)


@pytest.fixture
def tiny_adapter_files():
    """A folder with the files of a PEFT LoRA adapter (config and a weights file of no real weights)."""
    import json

    def make(folder):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
        (folder / "adapter_model.safetensors").write_bytes(b"0")
        return folder

    return make
