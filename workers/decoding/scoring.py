"""Label scoring: one forward pass per prompt, log-probabilities of the labels' tokens.

Each internal node of the label trie becomes one request of `max_tokens=1` asking vLLM for the
log-probabilities of exactly that node's child tokens (`logprob_token_ids`). Single-token labels
need only the prompt itself; longer labels add a request for the prompt extended by each of
their proper prefixes, which prefix caching makes cheap. The result is each label's sequence
likelihood, normalised over the labels: exact whatever tokens the labels share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workers.decoding.base import Decoded, DecodingMode, ScoringItem


class LabelScoring(DecodingMode):
    name = "scoring"

    def decode(self, llm: Any, items: Sequence[ScoringItem]) -> list[Decoded]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts, params, loras, owners = [], [], [], []
        for index, item in enumerate(items):
            trie = item.space.trie
            for prefix in trie.query_points:
                prompts.append(TokensPrompt(prompt_token_ids=item.prompt_ids + list(prefix)))
                params.append(SamplingParams(max_tokens=1, temperature=0.0,
                                             logprob_token_ids=trie.children[prefix]))
                loras.append(item.lora)
                owners.append((index, prefix))
        seen: list[dict] = [{} for _ in items]
        tokens = [[0, 0] for _ in items]
        if prompts:
            outputs = llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
            for (index, prefix), output in zip(owners, outputs):
                step = output.outputs[0].logprobs[0]
                seen[index][prefix] = {token: lp.logprob for token, lp in step.items()}
                tokens[index][0] += len(output.prompt_token_ids)
                tokens[index][1] += output.num_cached_tokens or 0
        return [Decoded(item.space.trie.probabilities(seen[i]), None, *tokens[i]) for i, item in enumerate(items)]
