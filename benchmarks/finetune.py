"""LoRA fine-tuning of MiniLM: seconds per step and per epoch (fp32, bf16), and held-out nDCG@10 before and after.

    python benchmarks/finetune.py --pairs 2000 --out benchmarks/results/finetune.json

The corpus is real and offline: one markdown page per standard-library module with every public
member's docstring (the demo's pages, uncapped), chunked with ragtune's chunker. Pairs are mined
and split exactly as ``ragtune finetune`` does (pipeline.pairs); held-out nDCG@10 is the gate's
(pipeline.gate) on the same held-out queries and passages for every model. The peer, measured in
the same run with the same trainer, batch and data, is a full fine-tune (every weight trains).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import pkgutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import gate, pairs, registry
from pipeline.chunk import ChunkOptions, chunk_document, load_tokenizer
from pipeline.embed import Encoder, cpu_supports_bf16
from pipeline.train import FinetuneOptions, train_lora

PEER_STEPS = 8


def stdlib_chunks(base: Path) -> list[pairs.CorpusChunk]:
    """Chunks of one page per importable standard-library module: its docstring and its members'."""
    tokenizer = load_tokenizer(base)
    now = datetime.now(UTC)
    chunks = []
    for name in _stdlib_modules():
        page = _module_page(name)
        if page:
            for c in chunk_document("stdlib", f"{name}.md", 1, name, page, "md", tokenizer, ChunkOptions()):
                chunks.append(pairs.CorpusChunk("stdlib", f"{name}.md", name, c.heading, c.text, now))
    return chunks


SKIPPED = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3", "ensurepip"}


def _stdlib_modules() -> list[str]:
    """Every public standard-library module, packages' submodules included (os.path, email.message, ...)."""
    names = set()
    for name in sys.stdlib_module_names:
        if name.startswith("_") or name in SKIPPED:
            continue
        names.add(name)
        try:
            package = importlib.import_module(name)
        except Exception:  # platform-only modules, optional C extensions
            continue
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{name}."):
            if not any(part.startswith("_") or part in SKIPPED for part in info.name.split(".")):
                names.add(info.name)
    return sorted(names)


def _module_page(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception:  # platform-only modules, optional C extensions
        return None
    doc = inspect.getdoc(module)
    if not doc:
        return None
    sections = [f"# {name}", doc]
    for member, obj in sorted(vars(module).items()):
        if member.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and inspect.getdoc(obj):
            sections += [f"## {name}.{member}", inspect.getdoc(obj) or ""]
    return "\n\n".join(sections) + "\n"


def train_once(base: Path, data: pairs.TrainingData, options: FinetuneOptions, bf16: bool) -> dict[str, Any]:
    """One LoRA training over the pairs; its timings and the merged model's directory."""
    out = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    started = time.perf_counter()
    result = train_lora(base, data.train_dataset(), options, out, bf16=bf16)
    wall = time.perf_counter() - started  # the whole retrain: load, train, merge, save
    steps_per_epoch = result.steps / result.epochs
    return {
        "precision": result.precision,
        "pairs": result.train_pairs,
        "steps": result.steps,
        "seconds": result.seconds,
        "retrain_seconds": wall,
        "seconds_per_step": result.seconds_per_step,
        "seconds_per_epoch": result.seconds_per_step * steps_per_epoch,
        "trainable_share": result.trainable_share,
        "final_loss": result.losses[-1][1],
        "model_dir": str(result.model_dir),
    }


def full_finetune_seconds_per_step(base: Path, data: pairs.TrainingData, options: FinetuneOptions, bf16: bool) -> float:
    """The peer: the same trainer, loss, batch and data, with every weight trainable."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(str(base), max_seq_length=options.max_seq_length)
    model = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()], device="cpu"
    )
    model.model_card_data.widget = [{"text": "ragtune"}]
    args = SentenceTransformerTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        max_steps=PEER_STEPS,
        per_device_train_batch_size=options.batch_size,
        learning_rate=2e-5,
        bf16=bf16,
        use_cpu=True,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data.train_dataset(), loss=MultipleNegativesRankingLoss(model)
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log dict
    started = time.perf_counter()
    trainer.train()
    return (time.perf_counter() - started) / PEER_STEPS


def ndcg(model_dir: Path, evalset: gate.EvalSet) -> float:
    encoder = Encoder(model_dir)
    encoder.choose_precision([t for texts in list(evalset.corpus.values())[:32] for t in texts][:32])
    return float(gate.score(encoder, evalset)["ndcg@10"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000, help="training pairs (one epoch over them)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    base = registry.default_base_model()

    chunks = stdlib_chunks(base)
    data = pairs.build(chunks, pairs.PairOptions(max_pairs=args.pairs))
    heldout = gate.eval_set("heldout", data.heldout_queries, chunks, gate.GateOptions().corpus_chunks, 42, False)
    options = FinetuneOptions(epochs=1, min_steps=1)  # exactly one epoch: the unit the target is stated in
    precisions = [False, True] if cpu_supports_bf16() else [False]
    runs = [train_once(base, data, options, bf16) for bf16 in precisions]
    before = ndcg(base, heldout)
    for run in runs:
        run["heldout_ndcg@10"] = ndcg(Path(run.pop("model_dir")), heldout)
    fastest = min(runs, key=lambda r: r["seconds_per_step"])
    peer = full_finetune_seconds_per_step(base, data, options, fastest["precision"] == "bf16")
    result = {
        "corpus": {"chunks": len(chunks), **data.stats, "heldout_queries": len(heldout.queries)},
        "eval_passages": heldout.n_passages,
        "batch_size": options.batch_size,
        "max_seq_length": options.max_seq_length,
        "runs": runs,
        "heldout_ndcg@10_base": before,
        "full_finetune_seconds_per_step": peer,
        "lora_vs_full_step_time": fastest["seconds_per_step"] / peer,
        "target_seconds_for_2000_pairs": 120,
    }
    _print_table(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _print_table(r: dict[str, Any]) -> None:
    c = r["corpus"]
    print(
        f"corpus: {c['chunks']:,} chunks of {c['documents']} stdlib pages; {c['train_pairs']:,} training pairs, "
        f"{r['corpus']['heldout_queries']} held-out queries over {r['eval_passages']:,} passages"
    )
    print(
        f"{'precision':<10}{'pairs':>7}{'steps':>7}{'s/step':>9}{'s/epoch':>9}{'retrain s':>11}{'trainable':>11}"
        f"{'loss':>8}{'nDCG@10':>9}"
    )
    print(f"{'base':<10}{'':>7}{'':>7}{'':>9}{'':>9}{'':>11}{'':>11}{'':>8}{r['heldout_ndcg@10_base']:>9.4f}")
    for run in r["runs"]:
        print(
            f"{run['precision']:<10}{run['pairs']:>7,}{run['steps']:>7}{run['seconds_per_step']:>9.2f}"
            f"{run['seconds_per_epoch']:>9.1f}{run['retrain_seconds']:>11.1f}{run['trainable_share']:>11.2%}"
            f"{run['final_loss']:>8.3f}"
            f"{run['heldout_ndcg@10']:>9.4f}"
        )
    print(
        f"peer, full fine-tune: {r['full_finetune_seconds_per_step']:.2f} s/step; "
        f"LoRA / full = {r['lora_vs_full_step_time']:.2f}"
    )


if __name__ == "__main__":
    main()
