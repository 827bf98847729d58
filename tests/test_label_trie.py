import math

import pytest

from pipeline.core.label_trie import LabelTrie


def test_single_token_labels_need_one_query():
    trie = LabelTrie({"a": [1], "b": [2], "c": [3]})
    assert trie.query_points == [()]
    probs = trie.probabilities({(): {1: math.log(0.05), 2: math.log(0.03), 3: math.log(0.02)}})
    assert probs == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.2})


def test_shared_first_token_uses_the_whole_sequence_likelihood():
    # "amazed" and "amused" share token 10; every token of every label counts.
    trie = LabelTrie({"amazed": [10, 11, 12], "amused": [10, 13, 12], "calm": [20]})
    assert trie.query_points == [(), (10,), (10, 11), (10, 13)]
    lp = {
        (): {10: math.log(0.4), 20: math.log(0.1)},
        (10,): {11: math.log(0.2), 13: math.log(0.6)},
        (10, 11): {12: math.log(0.5)},
        (10, 13): {12: math.log(0.5)},
    }
    raw = {"amazed": 0.4 * 0.2 * 0.5, "amused": 0.4 * 0.6 * 0.5, "calm": 0.1}
    total = sum(raw.values())
    assert trie.probabilities(lp) == pytest.approx({k: v / total for k, v in raw.items()})


def test_unobserved_nodes_count_as_forced():
    trie = LabelTrie({"p": [5, 1], "q": [5, 2], "r": [6]})
    probs = trie.probabilities({(): {5: math.log(0.5), 6: math.log(0.5)}, (5,): {1: math.log(0.5)}})
    # q's second token was not seen: counted as certain, so q outweighs p.
    assert probs["q"] > probs["p"]
    assert sum(probs.values()) == pytest.approx(1.0)


def test_a_label_that_is_a_token_prefix_of_another_is_refused():
    with pytest.raises(ValueError, match="prefix"):
        LabelTrie({"sad": [4], "sadness": [4, 9]})
