"""Fine-tuning: a LoRA adapter on the champion encoder, trained with in-batch negatives.

sentence-transformers' trainer and MultipleNegativesRankingLoss do the work; peft provides the
adapter. Only the adapter's low-rank matrices train (0.3% of MiniLM's weights), which keeps a
2,000-pair retrain on two CPU cores to about two minutes and leaves little room to forget. The
adapter is then merged into a plain model directory that the encoder loads like any other.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from datasets import Dataset

# Files that make a model directory loadable by sentence-transformers too; the weights are replaced.
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")

StepCallback = Callable[[int, int, float], None]  # (step, total steps, loss)


class FinetuneOptions(BaseModel):
    """LoRA and optimisation hyperparameters of a fine-tune."""

    model_config = ConfigDict(frozen=True)

    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("query", "value")
    learning_rate: float = Field(1e-3, gt=0.0)
    epochs: float = Field(1.0, gt=0.0)
    min_steps: int = Field(30, ge=1)  # small corpora get more epochs: one pass of 200 pairs teaches nothing
    batch_size: int = Field(32, ge=2)  # in-batch negatives: each pair's negatives are the batch's other passages
    max_steps: int | None = Field(None, ge=1)  # stops before the epochs end when set
    max_seq_length: int = Field(128, ge=8)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 42


@dataclass
class TrainResult:
    """What a training produced, and how it went."""

    model_dir: Path  # the merged model: a plain transformers directory
    adapter_dir: Path  # the LoRA adapter alone (a few hundred KB)
    steps: int = 0
    epochs: float = 0.0
    train_pairs: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    seconds: float = 0.0
    trainable_params: int = 0
    total_params: int = 0
    precision: str = "fp32"

    @property
    def seconds_per_step(self) -> float:
        """Mean wall time of one optimisation step."""
        return self.seconds / self.steps if self.steps else 0.0

    @property
    def trainable_share(self) -> float:
        """The share of the model's weights the adapter trains."""
        return self.trainable_params / self.total_params if self.total_params else 0.0

    def summary(self) -> dict[str, Any]:
        """Numbers for reports and MLflow (no paths, no per-step losses)."""
        data = asdict(self)
        for key in ("model_dir", "adapter_dir", "losses"):
            data.pop(key)
        data["seconds_per_step"] = self.seconds_per_step
        data["trainable_share"] = self.trainable_share
        data["final_loss"] = self.losses[-1][1] if self.losses else None
        return data


def train_lora(
    base_dir: Path,
    pairs: Dataset,
    options: FinetuneOptions,
    out_dir: Path,
    bf16: bool = False,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train a LoRA adapter on the model in ``base_dir`` with (anchor, positive) pairs; merge it into ``out_dir``."""
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers.utils import logging as hf_logging

    if len(pairs) < 2:
        raise ValueError(f"fine-tuning needs at least 2 training pairs, got {len(pairs)}")
    hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards": noise in a command's output
    model = _adapted_model(base_dir, options)
    result = TrainResult(model_dir=out_dir / "model", adapter_dir=out_dir / "adapter", train_pairs=len(pairs))
    result.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result.total_params = sum(p.numel() for p in model.parameters())
    result.precision = "bf16" if bf16 else "fp32"
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_training_arguments(options, out_dir / "checkpoints", bf16, len(pairs)),
        train_dataset=pairs,
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[_step_reporter(result, on_step)],
    )
    _quiet(trainer)
    started = time.perf_counter()
    output = trainer.train()
    result.seconds = time.perf_counter() - started
    result.steps, result.epochs = int(output.global_step), float(trainer.state.epoch or 0.0)
    model[0].auto_model.save_pretrained(str(result.adapter_dir))  # adapter weights and config only
    merge_adapter(base_dir, result.adapter_dir, result.model_dir)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return result


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path) -> None:
    """Fold a LoRA adapter into the base weights and save a plain model directory (with the tokenizer)."""
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    base = AutoModel.from_pretrained(str(base_dir), local_files_only=True)
    with warnings.catch_warnings():  # peft calls a transformers API that transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True).save_pretrained(str(out_dir))
    for name in SENTENCE_TRANSFORMERS_FILES:
        if (base_dir / name).is_file():
            shutil.copy2(base_dir / name, out_dir / name)
    if (base_dir / "1_Pooling").is_dir():
        shutil.copytree(base_dir / "1_Pooling", out_dir / "1_Pooling", dirs_exist_ok=True)


def _adapted_model(base_dir: Path, options: FinetuneOptions) -> Any:
    """The encoder as a SentenceTransformer (the same mean pooling + L2 norm as ours) with a fresh adapter."""
    from peft import LoraConfig
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(str(base_dir), max_seq_length=options.max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    # A non-empty widget list stops the trainer from computing model-card examples (with its own progress bar).
    model.model_card_data.widget = [{"text": "ragtune"}]
    model.add_adapter(
        LoraConfig(
            r=options.lora_r,
            lora_alpha=options.lora_alpha,
            lora_dropout=options.lora_dropout,
            target_modules=list(options.target_modules),
        )
    )
    return model


def _training_arguments(options: FinetuneOptions, output_dir: Path, bf16: bool, n_pairs: int) -> Any:
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainingArguments

    steps_per_epoch = math.ceil(n_pairs / options.batch_size)
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=max(options.epochs, options.min_steps / steps_per_epoch),
        max_steps=options.max_steps or -1,
        per_device_train_batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        warmup_steps=options.warmup_ratio,  # transformers 5: a float below 1 is a share of the steps
        seed=options.seed,
        bf16=bf16,
        use_cpu=True,
        # A query twice in one batch would be its own false negative.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )


def _quiet(trainer: Any) -> None:
    """Our callback reports progress; transformers' own printers would write each step's dict to stdout."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def _step_reporter(result: TrainResult, on_step: StepCallback | None) -> Any:
    """A trainer callback that collects each step's loss and passes it on (to a progress bar, to MLflow)."""
    from transformers import TrainerCallback

    class StepReporter(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                loss = float(logs["loss"])
                result.losses.append((int(state.global_step), loss))
                if on_step:
                    on_step(int(state.global_step), int(state.max_steps), loss)

    return StepReporter()
