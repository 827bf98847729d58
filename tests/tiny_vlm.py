"""A tiny random Qwen2-VL built at test time: a BPE tokenizer trained on MELD text with the
Qwen2-VL special tokens, a 1-layer text model (head_dim 64, since vLLM's CPU attention rejects
smaller heads), a 1-block vision tower and an image processor that caps images at 4 merged
patches. Saved as tokenizer + chat template + preprocessor_config.json (what `Qwen2VLProcessor`
loads from), a few MB, built in seconds.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item or 'image_url' in item or 'image_pil' in item %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' or 'video' in item %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in item %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _meld_texts(meld_train: Path | None) -> list[str]:
    if meld_train is None or not meld_train.exists():
        return ["The speaker smiles and looks at the camera, then turns away."] * 100
    with meld_train.open(encoding="utf-8") as f:
        return [row["Utterance"] for row in csv.DictReader(f)]


def build_tiny_qwen2_vl(folder: Path, meld_train: Path | None = None, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = Path(folder)
    if meld_train is None:
        meld_train = Path(__file__).resolve().parents[2] / "shared" / "data" / "MELD" / "train_sent_emo.csv"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_meld_texts(meld_train), trainer)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None,
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    # Small images: 28x28-pixel merged patches, at most 4 of them per image.
    # The PIL image processor: the default one needs torchvision, absent here.
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56)

    hidden = 128
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=256, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=2048,
            rope_parameters={"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 10000.0},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False,
        ),
        vision_config=dict(depth=1, embed_dim=64, hidden_size=hidden, num_heads=1, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return folder


@contextmanager
def qwen2_vl_without_torchvision() -> Iterator[None]:
    """Let vLLM run Qwen2-VL in this process where torchvision is absent (the CPU install removes it:
    PyPI's builds do not load against the CPU torch). A no-op where torchvision imports.

    Three things need torchvision there: vLLM's qwen2_vl module imports `smart_resize` from
    transformers' torchvision image processor (aliased here to the PIL one, which has the same
    function); vLLM inspects model classes in a child process (so the class is registered in this
    process instead); and `Qwen2VLProcessor` always loads a video processor (replaced by a stub
    that refuses videos; images only). The engine must run in this process
    (VLLM_ENABLE_V1_MULTIPROCESSING=0).
    """
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:
        yield
        return

    import importlib
    import sys

    from transformers import AutoTokenizer, Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin, VideosKwargs

    torch_name = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
    pil = importlib.import_module("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    saved_module = sys.modules.get(torch_name)
    sys.modules[torch_name] = pil

    from vllm import ModelRegistry
    from vllm.model_executor.models.qwen2_vl import Qwen2VLForConditionalGeneration

    arch = "Qwen2VLForConditionalGeneration"
    saved_model = ModelRegistry.models.get(arch)
    ModelRegistry.register_model(arch, Qwen2VLForConditionalGeneration)

    class NoVideoProcessor:
        valid_kwargs = VideosKwargs
        merge_size = 2
        patch_size = 14
        temporal_patch_size = 2

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no video processor here (torchvision is not installed)")

    check = ProcessorMixin.check_argument_for_proper_class
    saved_from_pretrained = Qwen2VLProcessor.__dict__.get("from_pretrained")  # usually inherited

    def check_argument(self: Any, name: str, argument: Any) -> Any:
        if isinstance(argument, NoVideoProcessor):
            return NoVideoProcessor
        return check(self, name, argument)

    def from_pretrained(cls: type, path: str, *args: Any, **kwargs: Any) -> Any:
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(image_processor=pil.Qwen2VLImageProcessorPil.from_pretrained(path), tokenizer=tokenizer,
                   video_processor=NoVideoProcessor(), chat_template=tokenizer.chat_template)

    ProcessorMixin.check_argument_for_proper_class = check_argument
    Qwen2VLProcessor.from_pretrained = classmethod(from_pretrained)
    try:
        yield
    finally:
        ProcessorMixin.check_argument_for_proper_class = check
        if saved_from_pretrained is None:
            del Qwen2VLProcessor.from_pretrained
        else:
            Qwen2VLProcessor.from_pretrained = saved_from_pretrained
        if saved_model is not None:
            ModelRegistry.models[arch] = saved_model
        if saved_module is None:
            sys.modules.pop(torch_name, None)
        else:
            sys.modules[torch_name] = saved_module
