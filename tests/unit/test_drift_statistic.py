"""The drift statistic and decision on synthetic corpora whose documents are clusters of chunks."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pipeline.drift import DriftOptions, Sample, Score, compare, decide

OPTIONS = DriftOptions()


def corpus(rng: np.random.Generator, n_docs: int, center: float, prefix: str) -> Sample:
    """Documents as clusters: each has its own centre around ``center``, and 3-11 chunks near it."""
    vectors, documents = [], []
    for i in range(n_docs):
        middle = center + rng.normal(0, 1.0, 48)
        for _ in range(rng.integers(3, 12)):
            vectors.append(middle + rng.normal(0, 0.3, 48))
            documents.append(f"{prefix}{i}")
    return Sample(np.array(vectors), documents)


def split_by_document(sample: Sample, rng: np.random.Generator) -> tuple[Sample, Sample]:
    names = sorted(set(sample.documents))
    first = set(rng.permutation(names)[: len(names) // 2])
    mask = np.array([d in first for d in sample.documents])
    docs = np.array(sample.documents)
    return Sample(sample.vectors[mask], list(docs[mask])), Sample(sample.vectors[~mask], list(docs[~mask]))


@pytest.mark.parametrize("seed", range(5))
def test_two_random_halves_of_one_corpus_do_not_drift(seed):
    rng = np.random.default_rng(seed)
    reference, current = split_by_document(corpus(rng, 160, 0.0, "d"), rng)

    score = compare(reference, current, OPTIONS)

    assert score.auc < OPTIONS.threshold
    assert score.p_value >= OPTIONS.alpha
    assert not decide(score, len(current), OPTIONS, None)[0]


def test_chunk_level_folds_would_call_random_halves_drift():
    """Why folds are drawn by document: with one group per chunk the classifier recognises documents."""
    rng = np.random.default_rng(3)
    reference, current = split_by_document(corpus(rng, 160, 0.0, "d"), rng)
    by_chunk = compare(
        Sample(reference.vectors, [f"r{i}" for i in range(len(reference))]),
        Sample(current.vectors, [f"c{i}" for i in range(len(current))]),
        OPTIONS,
    )
    by_document = compare(reference, current, OPTIONS)

    assert by_chunk.auc > by_document.auc + 0.1


def test_a_shift_to_another_domain_drifts_with_a_small_p_value():
    rng = np.random.default_rng(0)
    reference = corpus(rng, 100, 0.0, "old")
    current = corpus(rng, 60, 0.35, "new")

    score = compare(reference, current, OPTIONS)
    drifted, reason = decide(score, len(current), OPTIONS, None)

    assert score.auc >= 0.85
    assert score.p_value == pytest.approx(1 / (OPTIONS.permutations + 1))
    assert score.permutations == OPTIONS.permutations
    assert drifted, reason
    assert "AUC" in reason
    assert score.projection.shape == (len(reference) + len(current), 2)


def test_no_drift_stops_the_permutation_test_early():
    rng = np.random.default_rng(1)
    reference, current = split_by_document(corpus(rng, 120, 0.0, "d"), rng)

    score = compare(reference, current, OPTIONS)

    assert score.permutations < 20  # the p-value could no longer fall below alpha


def test_a_side_with_one_document_cannot_be_scored():
    rng = np.random.default_rng(0)
    reference = corpus(rng, 20, 0.0, "d")
    current = Sample(rng.normal(size=(30, 48)), ["only"] * 30)

    with pytest.raises(ValueError, match="two documents"):
        compare(reference, current, OPTIONS)


def strong() -> Score:
    return Score(auc=0.97, p_value=0.005, permutations=199, folds=5, projection=np.zeros((0, 2)))


def test_too_few_new_chunks_is_not_drift_whatever_the_score():
    drifted, reason = decide(strong(), 99, OPTIONS, None)
    assert not drifted
    assert "only 99 chunk texts" in reason and "100" in reason


def test_an_insignificant_score_is_not_drift():
    weak = Score(auc=0.8, p_value=0.04, permutations=30, folds=5, projection=np.zeros((0, 2)))
    drifted, reason = decide(weak, 500, OPTIONS, None)
    assert not drifted
    assert "not significant" in reason


def test_the_cool_down_holds_back_a_second_fine_tune():
    now = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)

    held, reason = decide(strong(), 500, OPTIONS, now - timedelta(hours=5), now)
    after, _ = decide(strong(), 500, OPTIONS, now - timedelta(hours=21), now)

    assert not held
    assert "5.0 h ago" in reason and "cool-down 20 h" in reason
    assert after


def test_the_threshold_is_a_setting():
    drifted, _ = decide(strong(), 500, DriftOptions(threshold=0.99), None)
    assert not drifted
