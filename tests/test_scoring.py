import random
from fractions import Fraction
from itertools import combinations

import pytest

from membudget.scoring import CORRECT, bootstrap_ci, maj_at_k, score, vote_key


def brute_force_maj(votes, k):
    """Enumerate every k-subset; ties split the win evenly; abstentions (None) do not vote."""
    total = Fraction(0)
    subsets = list(combinations(range(len(votes)), k))
    for subset in subsets:
        counts = {}
        for i in subset:
            if votes[i] is not None:
                counts[votes[i]] = counts.get(votes[i], 0) + 1
        if not counts:
            continue
        top = max(counts.values())
        winners = [v for v, c in counts.items() if c == top]
        if CORRECT in winners:
            total += Fraction(1, len(winners))
    return float(total / len(subsets))


def test_maj_at_k_matches_brute_force_on_random_tables():
    rng = random.Random(0)
    for _ in range(150):
        n = rng.randint(1, 10)
        votes = [rng.choice([CORRECT, CORRECT, "a", "b", "c", None]) for _ in range(n)]
        for k in range(1, n + 1):
            assert maj_at_k(votes, k) == pytest.approx(brute_force_maj(votes, k), abs=1e-12), (votes, k)


def test_maj_at_k_edges():
    assert maj_at_k([CORRECT, "a"], 2) == 0.5  # tie rule
    assert maj_at_k(["a", "a", None], 3) == 0.0
    assert maj_at_k([None, None], 2) == 0.0
    assert maj_at_k([CORRECT] * 32, 16) == 1.0
    with pytest.raises(ValueError):
        maj_at_k([CORRECT], 2)


def test_vote_keys_merge_equivalent_answers():
    assert vote_key("\\frac12", True) == vote_key("0.5", True) == CORRECT
    assert vote_key("1 / 3", False) == vote_key("1/3", False)
    assert vote_key(None, False) is None and vote_key("  ", False) is None


def test_score_pass_and_maj_with_intervals():
    table = [[("1", True), ("2", False), ("2", False)], [("5", True)] * 3, [(None, False)] * 3]
    s1 = score(table)
    assert s1.metric == "pass@1" and s1.value == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert s1.n_samples == 3 and s1.n_problems == 3
    assert s1.low <= s1.value <= s1.high
    s3 = score(table, k=3)
    assert s3.metric == "maj@3" and s3.value == pytest.approx(1 / 3)
    assert "95 % CI, 3 problems, n = 3" in str(s3)
    with pytest.raises(ValueError, match="different sample counts"):
        score([[("1", True)], [("1", True), ("1", True)]])


def test_bootstrap_is_seeded_and_sane():
    rng = random.Random(1)
    data = [rng.random() for _ in range(30)]
    assert bootstrap_ci(data, seed=5) == bootstrap_ci(data, seed=5)
    low, high = bootstrap_ci(data)
    assert low < sum(data) / 30 < high
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
    wide = bootstrap_ci([0.0, 1.0] * 5)
    narrow = bootstrap_ci([0.0, 1.0] * 500)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
