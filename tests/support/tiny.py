"""A tiny randomly initialised BERT with MiniLM's tokenizer: trains in seconds, knows nothing."""

from __future__ import annotations

from pathlib import Path

from pipeline.train import FinetuneOptions

# A random model learns slowly: more epochs, a higher rate and adapters on every linear layer.
TINY_FINETUNE = FinetuneOptions(
    epochs=20, learning_rate=1e-2, lora_r=16, target_modules=("query", "key", "value", "dense"), seed=0
)


def build_tiny_bert(out: Path) -> Path:
    """Save a 2-layer, 64-wide random BERT and the packaged MiniLM tokenizer into ``out``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pipeline.registry import default_base_model

    tokenizer = AutoTokenizer.from_pretrained(str(default_base_model()), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
    )
    out.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
