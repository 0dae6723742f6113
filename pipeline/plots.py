"""Figures a reviewer would rather look at than read: written as PNG files for MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

METRICS = ("ndcg@10", "recall@10", "mrr@10")


def finetune_figure(result: dict[str, Any], losses: list[tuple[int, float]], out: Path) -> Path:
    """Training loss per step, and challenger vs champion on each query set, side by side."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here
    import matplotlib.pyplot as plt

    fig, (loss_ax, bars_ax) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    if losses:
        loss_ax.plot([s for s, _ in losses], [v for _, v in losses], color="tab:gray")
    loss_ax.set(title="training loss (in-batch negatives)", xlabel="step", ylabel="loss")
    labels = [f"{name}\n{metric}" for name in result["metrics"] for metric in METRICS]
    ours = [result["metrics"][name][m] for name in result["metrics"] for m in METRICS]
    theirs = [result["champion_metrics"][name][m] for name in result["metrics"] for m in METRICS]
    positions = range(len(labels))
    bars_ax.bar([p - 0.2 for p in positions], theirs, width=0.4, label=f"champion v{result['parent_version']}")
    bars_ax.bar([p + 0.2 for p in positions], ours, width=0.4, label=f"challenger v{result['model_version']}")
    bars_ax.set_xticks(list(positions), labels, fontsize=8)
    bars_ax.set(ylim=(0, 1.2), yticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0], title="retrieval: challenger vs champion")
    bars_ax.legend(loc="upper left", ncol=2)  # above the bars: scores stop at 1.0
    verdict = "promoted" if result["promoted"] else "not promoted"
    fig.suptitle(f"ragtune fine-tune: version {result['model_version']} {verdict}")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def drift_figure(report: dict[str, Any], projection: Any, out: Path) -> Path:
    """Reference and new chunks on their first two principal components, with the decision as title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_ref = report["n_reference"]
    fig, ax = plt.subplots(figsize=(6.5, 5), constrained_layout=True)
    ax.scatter(projection[:n_ref, 0], projection[:n_ref, 1], s=6, alpha=0.5, label=f"reference ({n_ref:,})")
    ax.scatter(
        projection[n_ref:, 0], projection[n_ref:, 1], s=6, alpha=0.5, label=f"new since ({len(projection) - n_ref:,})"
    )
    ax.set(xlabel="principal component 1", ylabel="principal component 2")
    ax.legend(loc="best", markerscale=3)
    verdict = "drift" if report["drifted"] else "no drift"
    score = "n/a" if report["score"] is None else f"{report['score']:.3f}"
    title = f"drift vs version {report['model_version']}: {verdict} (AUC {score}, threshold {report['threshold']})"
    fig.suptitle(title)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
