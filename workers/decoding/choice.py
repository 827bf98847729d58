"""Constrained generation: vLLM's structured outputs (`choice`) force one of the label strings.

The chosen label is what was generated. Probabilities come from the log-probabilities of the
label tokens at each generated step: exact for labels whose tokens lie on the generated path or
branch off it; tokens of a label after it branched off are counted as forced, as the grammar
would force them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workers.decoding.base import Decoded, DecodingMode, ScoringItem


class ChoiceDecoding(DecodingMode):
    name = "choice"

    def decode(self, llm: Any, items: Sequence[ScoringItem]) -> list[Decoded]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import StructuredOutputsParams

        params_by_space: dict[int, Any] = {}
        params = []
        for item in items:
            space = item.space
            if id(space) not in params_by_space:
                tokens = sorted({t for ids in space.trie.label_tokens.values() for t in ids})
                params_by_space[id(space)] = SamplingParams(
                    max_tokens=space.trie.max_tokens + 4,
                    temperature=0.0,
                    structured_outputs=StructuredOutputsParams(choice=list(space.answers)),
                    logprob_token_ids=tokens,
                )
            params.append(params_by_space[id(space)])
        outputs = llm.generate(
            [TokensPrompt(prompt_token_ids=item.prompt_ids) for item in items],
            params,
            lora_request=[item.lora for item in items],
            use_tqdm=False,
        )
        return [self._read(item, output) for item, output in zip(items, outputs)]

    @staticmethod
    def _read(item: ScoringItem, output: Any) -> Decoded:
        completion = output.outputs[0]
        trie = item.space.trie
        seen = {}
        generated = list(completion.token_ids)
        for depth, step in enumerate(completion.logprobs or ()):
            prefix = tuple(generated[:depth])
            if prefix in trie.children:
                seen[prefix] = {token: lp.logprob for token, lp in step.items()}
        text = completion.text.strip()
        label = next((lab for lab, ans in zip(item.space.labels, item.space.answers)
                      if ans.strip() == text), None)
        return Decoded(trie.probabilities(seen), label, len(output.prompt_token_ids), output.num_cached_tokens or 0)
