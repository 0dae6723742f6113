"""Drift: have the chunks that arrived since the champion was promoted moved away from what it knew?

When a model version becomes champion, ragtune remembers every chunk text the corpus has and keeps a
seeded sample of their vectors: the *reference*. The *current* sample is the chunk texts added or
changed since, embedded by the same model. New chunks a check clears (enough of them, scored below
the threshold) join what the reference knows, so a later shift is not diluted by them; too few
to test, or drifted, they stay new and accumulate until they are tested.

A domain classifier (a linear discriminant on the vectors) tries to tell the two apart; its
cross-validated ROC AUC is the drift score: about 0.5 when it cannot, 1.0 when the new chunks are
plainly something else.

Two details keep the score honest. Cross-validation folds are drawn by document, because chunks
of one document resemble each other: with chunk-level folds the classifier would recognise
documents it has seen, and two random halves of one corpus would look drifted. For the same reason
the permutation test behind the p-value shuffles the labels of whole documents.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline import store
from pipeline.errors import UserError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

METHOD = "domain classifier: linear discriminant, ROC AUC cross-validated by document"


class DriftOptions(BaseModel):
    """When new chunks count as drift, and how hard the test looks."""

    model_config = ConfigDict(frozen=True)

    # AUC at or above this is drift. 0.75: random halves of the standard library's docs score 0.41 to
    # 0.61 over 20 seeds, a move to the ML libraries' docs 1.00 (benchmarks/drift.py, MiniLM).
    threshold: float = Field(0.75, ge=0.5, le=1.0)
    alpha: float = Field(0.01, gt=0.0, lt=1.0)  # and the permutation test must reject "no difference"
    min_samples: int = Field(100, ge=10)  # new chunk texts needed before drift can be called
    cooldown_hours: float = Field(20.0, ge=0.0)  # no second fine-tune this soon after one
    reference_size: int = Field(1000, ge=50)  # vectors kept per champion
    current_size: int = Field(1000, ge=50)  # new vectors compared (a seeded sample when there are more)
    permutations: int = Field(199, ge=19)  # p-values down to 1/200
    folds: int = Field(5, ge=2)
    components: int = Field(32, ge=2)  # PCA dimensions the classifier sees
    seed: int = 42


@dataclass(frozen=True)
class Sample:
    """Vectors and the document each came from."""

    vectors: np.ndarray
    documents: list[str]

    def __len__(self) -> int:
        return len(self.documents)


@dataclass(frozen=True)
class Score:
    """What the classifier found: AUC, its p-value, and a 2-D view of both samples for the plot."""

    auc: float
    p_value: float
    permutations: int  # done: the test stops once the p-value cannot fall below alpha
    folds: int
    projection: np.ndarray  # (n_reference + n_current, 2): the first two principal components


@dataclass
class DriftReport:
    """One drift check: the contract keys, why it decided so, and the sizes behind it."""

    model_version: str
    score: float | None
    threshold: float
    drifted: bool
    reason: str
    p_value: float | None
    n_reference: int
    n_current: int  # chunk texts added or changed since the reference
    method: str = METHOD
    details: dict[str, Any] = field(default_factory=dict)
    projection: np.ndarray | None = field(default=None, repr=False)  # for the plot, not the JSON

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        data = asdict(self)
        del data["projection"]
        return data


def compare(reference: Sample, current: Sample, options: DriftOptions) -> Score:
    """Cross-validated AUC of a classifier telling ``current`` from ``reference``, with a permutation p-value.

    Raises ValueError when either side has fewer than two documents (no fold could hold one out).
    """
    from sklearn.decomposition import PCA

    vectors = np.vstack([reference.vectors, current.vectors]).astype(np.float64)
    labels = np.r_[np.zeros(len(reference), dtype=int), np.ones(len(current), dtype=int)]
    # A document on both sides (edited since) becomes two groups: each group has one label.
    groups = np.array([f"r:{d}" for d in reference.documents] + [f"c:{d}" for d in current.documents])
    group_ids, group_of = np.unique(groups, return_inverse=True)
    group_label = np.array([int(g.startswith("c:")) for g in group_ids])
    per_side = min(int((group_label == 0).sum()), int((group_label == 1).sum()))
    if per_side < 2:
        raise ValueError("each side needs chunks from at least two documents")
    folds = min(options.folds, per_side)
    n_components = min(options.components, vectors.shape[0] - 1, vectors.shape[1])
    # Label-blind, so fitting it on both samples leaks nothing into the folds.
    reduced = PCA(n_components=n_components, random_state=options.seed).fit_transform(vectors)
    rng = np.random.default_rng(options.seed)
    fold_of = _group_folds(group_label, folds, rng)[group_of]  # one partition for every permutation
    observed = _cv_auc(reduced, labels, fold_of, folds)
    at_least = done = 0
    while done < options.permutations:
        done += 1
        shuffled = rng.permutation(group_label)[group_of]
        if _cv_auc(reduced, shuffled, fold_of, folds) >= observed:
            at_least += 1
        if (1 + at_least) / (1 + options.permutations) >= options.alpha:
            break  # p can no longer fall below alpha: stop early (non-drift costs a few fits)
    return Score(observed, (1 + at_least) / (1 + done), done, folds, reduced[:, :2])


def _group_folds(group_label: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold for each group: each side's groups dealt round-robin in a seeded order."""
    fold = np.empty(len(group_label), dtype=int)
    for side in (0, 1):
        members = rng.permutation(np.flatnonzero(group_label == side))
        fold[members] = np.arange(len(members)) % folds
    return fold


def _cv_auc(features: np.ndarray, labels: np.ndarray, fold_of: np.ndarray, folds: int) -> float:
    """ROC AUC of out-of-fold classifier scores; a document's chunks are all in one fold."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import roc_auc_score

    scores = np.zeros(len(labels))
    for k in range(folds):
        test = fold_of == k
        train = ~test
        if len(np.unique(labels[train])) < 2:
            continue  # a fold with one class left to learn from says nothing
        # Linear discriminant with Ledoit-Wolf shrinkage: closed form, so 200 permutations take seconds.
        model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=[0.5, 0.5])
        scores[test] = model.fit(features[train], labels[train]).decision_function(features[test])
    return float(roc_auc_score(labels, scores))


def decide(
    score: Score | None,
    n_current: int,
    options: DriftOptions,
    last_finetune: datetime | None,
    now: datetime | None = None,
) -> tuple[bool, str]:
    """Drifted or not, and the reason in words."""
    if n_current < options.min_samples:
        return False, (
            f"only {n_current} chunk texts added or changed since the reference "
            f"(drift is called from {options.min_samples})"
        )
    if score is None:
        return False, "the new chunks come from fewer than two documents: nothing to compare"
    if score.auc < options.threshold:
        return False, f"AUC {score.auc:.3f} < {options.threshold}: the new chunks look like the reference"
    if score.p_value >= options.alpha:
        return False, f"AUC {score.auc:.3f} but p = {score.p_value:.3f} >= {options.alpha}: not significant"
    if last_finetune is not None:
        hours = ((now or datetime.now(UTC)) - last_finetune).total_seconds() / 3600
        if hours < options.cooldown_hours:
            return False, (
                f"AUC {score.auc:.3f} >= {options.threshold}, but a fine-tune ran {hours:.1f} h ago "
                f"(cool-down {options.cooldown_hours:g} h)"
            )
    return True, f"AUC {score.auc:.3f} >= {options.threshold} (p = {score.p_value:.3f} < {options.alpha})"


def ensure_reference(pool: ConnectionPool, index: store.IndexInfo, options: DriftOptions, run_id: str | None) -> bool:
    """Take the version's reference from its index if it has none yet; True if taken now."""
    with store.transaction(pool) as conn:
        if store.reference_of(conn, index.model_version) is not None:
            return False
        store.take_reference(conn, index, options.reference_size, options.seed, run_id)
        return True


def measure(
    pool: ConnectionPool, options: DriftOptions, run_id: str | None, now: datetime | None = None
) -> DriftReport:
    """Compare what arrived since the serving model's reference with that reference; record the report."""
    started = time.perf_counter()
    with pool.connection() as conn:
        index = store.active_index(conn)
    if index is None:
        raise UserError("no index to check for drift yet: run `ragtune refresh` first")
    taken_now = ensure_reference(pool, index, options, run_id)
    with pool.connection() as conn:
        reference_info = store.reference_of(conn, index.model_version) or {}
        reference = _sample([(s, d, v) for s, d, v in store.reference_sample(conn, index.model_version)])
        new = store.new_chunks(conn, index)
        picked = _subsample(new, options.current_size, options.seed)  # only these vectors are read
        vectors = store.vectors_of(conn, index, [h for h, _, _ in picked])
        last_finetune = store.last_finetune(conn)
    current = _sample([(source, doc_id, vectors[h]) for h, source, doc_id in picked])
    score = None
    if len(current) >= 2 * options.folds:  # scored even below min_samples: the number is informative
        try:
            score = compare(reference, current, options)
        except ValueError:
            score = None  # fewer than two documents on a side
    drifted, reason = decide(score, len(new), options, last_finetune, now)
    # New chunks that tested as the reference's own kind join what it knows, so they do not dilute
    # the next check: a later shift is then compared on its own, not mixed with cleared chunks.
    absorb = score is not None and score.auc < options.threshold and len(new) >= options.min_samples
    report = DriftReport(
        model_version=index.model_version,
        score=score.auc if score else None,
        threshold=options.threshold,
        drifted=drifted,
        reason=reason,
        p_value=score.p_value if score else None,
        n_reference=len(reference),
        n_current=len(new),
        projection=score.projection if score else None,
        details={
            "alpha": options.alpha,
            "min_samples": options.min_samples,
            "cooldown_hours": options.cooldown_hours,
            "compared": len(current),
            "permutations": score.permutations if score else 0,
            "folds": score.folds if score else 0,
            "reference_taken_at": _iso(reference_info.get("taken_at")),
            "reference_taken_now": taken_now,
            "known_chunks": reference_info.get("n_known", 0),
            "last_finetune": _iso(last_finetune),
            "absorbed": len(new) if absorb else 0,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    with store.transaction(pool) as conn:
        row = report.as_dict()
        store.record_drift(conn, {**row, "run_id": run_id, "details": {**row["details"], "reason": reason}})
        if absorb:
            store.absorb_chunks(conn, index.model_version, new)
    return report


def record_in_mlflow(tracking_uri: str, artifact_root: Path, result: DriftReport) -> str:
    """Log a drift check as a run of experiment ragtune-drift, with its report and plot; return the run id."""
    from pipeline import plots, report, tracking  # MLflow and matplotlib: not at import, Settings imports this

    data = result.as_dict()
    fields = report.drift_mlflow_fields(data)
    run = tracking.start_run(tracking_uri, artifact_root, "ragtune-drift", "drift", fields["params"], {})
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {"report": Path(tmp) / "drift.md"}
        artifacts["report"].write_text(report.drift_markdown(data), encoding="utf-8")
        if result.projection is not None:
            artifacts["plots"] = plots.drift_figure(data, result.projection, Path(tmp) / "drift.png")
        tracking.finish_run(tracking_uri, run, fields["metrics"], fields["tags"], artifacts)
    return run


def _sample(rows: list[tuple[str, str, Any]]) -> Sample:
    if not rows:
        return Sample(np.empty((0, 0), dtype=np.float32), [])
    vectors = np.vstack([np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v) for _, _, v in rows])
    return Sample(vectors.astype(np.float32), [f"{s}/{d}" for s, d, _ in rows])


def _subsample(rows: list[tuple[str, str, str]], size: int, seed: int) -> list[tuple[str, str, str]]:
    """Up to ``size`` of the new chunks, the same ones for the same corpus."""
    if len(rows) <= size:
        return rows
    picked = np.random.default_rng(seed).choice(len(rows), size=size, replace=False)
    return [rows[i] for i in sorted(picked)]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
