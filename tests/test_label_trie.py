import math

import pytest

from pipeline.label_trie import LabelTrie


def test_distinct_first_tokens_need_one_query():
    trie = LabelTrie({"a": [1], "b": [2, 7], "c": [3]})
    assert trie.branch_points == [()]
    probs = trie.probabilities({(): {1: math.log(0.5), 2: math.log(0.3), 3: math.log(0.2)}})
    assert probs == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.2})


def test_shared_first_token_is_resolved_by_the_second_step():
    # "amazed" and "amused" share token 10; the split between them comes from the second query.
    trie = LabelTrie({"amazed": [10, 11, 12], "amused": [10, 13, 12], "calm": [20]})
    assert trie.branch_points == [(), (10,)]
    probs = trie.probabilities({
        (): {10: math.log(0.8), 20: math.log(0.2)},
        (10,): {11: math.log(0.25), 13: math.log(0.75)},
    })
    assert probs == pytest.approx({"amazed": 0.2, "amused": 0.6, "calm": 0.2})


def test_probabilities_are_renormalised_over_the_labels():
    trie = LabelTrie({"x": [1], "y": [2]})
    probs = trie.probabilities({(): {1: math.log(0.02), 2: math.log(0.06)}})
    assert probs == pytest.approx({"x": 0.25, "y": 0.75})


def test_unobserved_branch_is_split_evenly():
    trie = LabelTrie({"p": [5, 1], "q": [5, 2], "r": [6]})
    probs = trie.probabilities({(): {5: math.log(0.5), 6: math.log(0.5)}})
    assert probs == pytest.approx({"p": 0.25, "q": 0.25, "r": 0.5})


def test_a_label_that_is_a_token_prefix_of_another_is_refused():
    with pytest.raises(ValueError, match="prefix"):
        LabelTrie({"sad": [4], "sadness": [4, 9]})
