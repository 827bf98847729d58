"""Tiny random models built at test time: a BPE tokenizer trained on MELD text and 2 or 3 layers.

`build_tiny_llama` (no <bos>, as SmolLM2); `build_tiny_gemma3` (Gemma 3's layout: <bos> first in every
encoding, sliding-window and global layers with their own rotary bases, tied embeddings, a window
short enough that prompts outgrow it). head_dim is 64 because vLLM's CPU attention rejects smaller heads.
"""

from __future__ import annotations

import csv
from pathlib import Path

EXTRA_WORDS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear", "joyful", "peaceful",
               "powerful", "scared", "mad", "sad", "happiness", "frustrated", "angry", "happy", "excited"]


def _tokenizer(meld_train: Path, bos_first: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    with meld_train.open(encoding="utf-8") as f:
        texts = [row["Utterance"] for row in csv.DictReader(f)]
    texts += ["### Instruction: ### Conversation: ### Target utterance: ### Response: " + " ".join(EXTRA_WORDS)] * 50
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    if bos_first:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                           special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")


def build_tiny_llama(folder: Path, meld_train: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer(meld_train)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Larger logits than the default init, so label probabilities differ visibly.
        model.lm_head.weight.mul_(20)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_gemma3(folder: Path, meld_train: Path, seed: int = 0, sliding_window: int = 24) -> Path:
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = _tokenizer(meld_train, bos_first=True)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=64, query_pre_attn_scalar=64,
        max_position_embeddings=1024, sliding_window=sliding_window,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_lora_adapter(model_dir: Path, folder: Path, rank: int = 8, seed: int = 1) -> Path:
    """A random (non-zero) LoRA adapter on q_proj and v_proj, saved as PEFT does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank,
                                                  target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(4)
    peft_model.save_pretrained(folder)
    return folder
