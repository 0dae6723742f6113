"""Training pairs mined from hand-made corpus rows: what is paired, how it is split, the user's own pairs."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.evaluate import Query
from pipeline.pairs import CorpusChunk, PairOptions, build, is_heldout

OLD = datetime(2020, 1, 1, tzinfo=UTC)
NEW = datetime(2024, 6, 1, tzinfo=UTC)


def body(n: object) -> str:
    return f"Passage {n} explains in enough words what this part of the document is about."


def chunk(
    doc_id: str,
    text: str | None = None,
    title: str | None = None,
    heading: str | None = None,
    updated_at: datetime = NEW,
) -> CorpusChunk:
    return CorpusChunk("docs", doc_id, title, heading, text or body(doc_id), updated_at)


def doc_ids(heldout: bool, n: int, options: PairOptions, prefix: str = "doc") -> list[str]:
    """The first ``n`` ids of the form ``{prefix}{i}`` that fall on the asked side of the split."""
    ids = (f"{prefix}{i}" for i in range(10_000))
    return [d for d in ids if is_heldout("docs", d, options) == heldout][:n]


def all_pairs(chunks: list[CorpusChunk], options: PairOptions | None = None) -> list[tuple[str, str, str]]:
    data = build(chunks, options or PairOptions())
    return sorted((p.query, p.passage, p.kind) for p in data.train + data.heldout)


@pytest.mark.parametrize(
    "heading", ["Examples", "Notes", "See also", "Parameters", "1.2", "3", "Examples:", "SEE ALSO", "  Notes  "]
)
def test_generic_and_numbered_headings_give_no_pairs(heading: str):
    assert all_pairs([chunk("d1", heading=heading)]) == []


def test_a_specific_heading_is_paired_with_the_bare_chunk_body():
    assert all_pairs([chunk("d1", heading="Configuring the frobnicator")]) == [
        ("Configuring the frobnicator", body("d1"), "heading")
    ]


def test_title_and_heading_pairs_carry_no_title_or_heading_line():
    chunks = [chunk("d1", title="Widget guide", heading="Installing widgets")]
    assert all_pairs(chunks) == [
        ("Installing widgets", body("d1"), "heading"),
        ("Widget guide", body("d1"), "title"),
    ]


def test_a_heading_equal_to_the_title_is_paired_once():
    assert all_pairs([chunk("d1", title="Widget guide", heading="Widget guide")]) == [
        ("Widget guide", body("d1"), "title")
    ]


def test_a_title_is_paired_with_at_most_three_chunks_of_its_document():
    chunks = [chunk("d1", text=body(i), title="Widget guide") for i in range(5)]
    assert [p[1] for p in all_pairs(chunks)] == [body(0), body(1), body(2)]


def test_too_short_passages_and_queries_give_no_pairs():
    assert all_pairs([chunk("d1", text="Too short to teach anything.", heading="Frobnicator setup")]) == []
    assert all_pairs([chunk("d1", heading="Abc")]) == []


def test_a_heading_in_many_documents_is_boilerplate():
    chunks = [chunk(f"d{i}", text=body(f"{i}a"), heading="Edit this page") for i in range(20)]
    chunks += [chunk(f"d{i}", text=body(f"{i}b"), heading=f"Frobnicating widget {i}") for i in range(20)]
    queries = {q for q, _, _ in all_pairs(chunks)}
    assert queries == {f"Frobnicating widget {i}" for i in range(20)}


def test_boilerplate_depends_on_the_share_of_documents_with_the_heading():
    chunks = [chunk(f"d{i}", heading="Shared heading" if i < 3 else f"Own heading {i}") for i in range(10)]
    strict = [q for q, _, _ in all_pairs(chunks, PairOptions(boilerplate_share=0.05))]
    lenient = [q for q, _, _ in all_pairs(chunks, PairOptions(boilerplate_share=0.5))]
    assert "Shared heading" not in strict
    assert lenient.count("Shared heading") == 3  # in 3 of 10 documents: not more than half
    assert sorted(set(lenient) - set(strict)) == ["Shared heading"]


def test_duplicate_pairs_are_kept_once_whatever_the_case_of_the_query():
    chunks = [
        chunk("d1", heading="Frobnicator setup"),
        chunk("d1", heading="frobnicator SETUP"),
        chunk("d2", heading="Frobnicator setup"),  # another passage: a pair of its own
    ]
    assert all_pairs(chunks) == [
        ("Frobnicator setup", body("d1"), "heading"),
        ("Frobnicator setup", body("d2"), "heading"),
    ]


def corpus(n_docs: int, prefix: str = "doc") -> list[CorpusChunk]:
    return [chunk(f"{prefix}{i}", title=f"Guide number {i}", heading=f"Topic {prefix}{i}") for i in range(n_docs)]


def sides(chunks: list[CorpusChunk], options: PairOptions) -> tuple[set[str], set[str]]:
    data = build(chunks, options)
    return {p.doc_id for p in data.train}, {p.doc_id for p in data.heldout}


def test_no_document_is_on_both_sides_of_the_split():
    train, heldout = sides(corpus(200), PairOptions(heldout_share=0.2))
    assert train & heldout == set()
    assert train | heldout == {f"doc{i}" for i in range(200)}
    assert 20 <= len(heldout) <= 60  # about a fifth


def test_the_split_follows_the_seeded_hash_of_the_document_id():
    options = PairOptions(seed=7)
    data = build(corpus(100), options)
    assert {p.doc_id for p in data.heldout} == {f"doc{i}" for i in range(100) if is_heldout("docs", f"doc{i}", options)}
    assert data.stats["heldout_documents"] == len({p.doc_id for p in data.heldout})


def test_the_split_is_the_same_on_a_second_call():
    assert sides(corpus(100), PairOptions()) == sides(corpus(100), PairOptions())


def test_adding_documents_does_not_move_existing_ones_across_the_split():
    before_train, before_heldout = sides(corpus(100), PairOptions())
    after_train, after_heldout = sides(corpus(100) + corpus(50, prefix="new"), PairOptions())
    assert {d for d in after_heldout if d.startswith("doc")} == before_heldout
    assert {d for d in after_train if d.startswith("doc")} == before_train
    assert any(d.startswith("new") for d in after_heldout)


def test_another_seed_gives_another_split():
    assert sides(corpus(100), PairOptions(seed=1))[1] != sides(corpus(100), PairOptions(seed=2))[1]


def shared_heading_corpus(options: PairOptions) -> tuple[list[CorpusChunk], list[str], str]:
    old_doc, new_doc = doc_ids(heldout=True, n=2, options=options)
    (train_doc,) = doc_ids(heldout=False, n=1, options=options)
    chunks = [
        chunk(old_doc, heading="Resetting the password", updated_at=OLD),
        chunk(new_doc, heading="Resetting the password", updated_at=NEW),
        chunk(train_doc, heading="Resetting the password", updated_at=OLD),
    ]
    return chunks, [old_doc, new_doc], train_doc


def test_heldout_queries_group_every_heldout_document_with_the_query():
    options = PairOptions(boilerplate_share=1.0)
    chunks, (old_doc, new_doc), train_doc = shared_heading_corpus(options)
    data = build(chunks, options)
    assert data.heldout_queries == [Query("Resetting the password", tuple(sorted([old_doc, new_doc])))]
    assert [p.doc_id for p in data.train] == [train_doc]


def test_canary_queries_are_the_heldout_ones_about_documents_older_than_the_cutoff():
    options = PairOptions(boilerplate_share=1.0)
    chunks, (old_doc, _), _ = shared_heading_corpus(options)
    data = build(chunks, options, canary_before=datetime(2023, 1, 1, tzinfo=UTC))
    assert data.canary_queries == [Query("Resetting the password", (old_doc,))]
    assert build(chunks, options).canary_queries == []


def test_max_pairs_caps_the_training_pairs_with_a_seeded_sample():
    options = PairOptions(max_pairs=10)
    first, second = build(corpus(100), options), build(corpus(100), options)
    uncapped = build(corpus(100), PairOptions())
    assert len(first.train) == first.stats["train_pairs"] == 10
    assert first.train == second.train
    assert set(first.train) < set(uncapped.train)
    assert first.heldout == uncapped.heldout  # the cap is on training pairs only


def write_pairs(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_user_pairs_with_text_or_doc_id_are_added_to_training(tmp_path: Path):
    (train_doc,) = doc_ids(heldout=False, n=1, options=PairOptions())
    chunks = [chunk(train_doc, text=body(1)), chunk(train_doc, text=body(2))]
    path = write_pairs(
        tmp_path,
        json.dumps({"query": "how do I frob a widget", "text": "Frobbing a widget takes a frobnicator."}),
        "",
        json.dumps({"query": "reset my password", "doc_id": train_doc}),
    )
    data = build(chunks, PairOptions(user_pairs=path))
    user = sorted((p.query, p.passage, p.doc_id) for p in data.train if p.kind == "user")
    assert user == [
        ("how do I frob a widget", "Frobbing a widget takes a frobnicator.", "pairs.jsonl:1"),
        ("reset my password", body(1), train_doc),
        ("reset my password", body(2), train_doc),
    ]
    assert data.stats["user_pairs"] == 3


@pytest.mark.parametrize(
    "line", ["not json", '["query", "text"]', '{"query": "x"}', '{"query": "  ", "text": "t"}', '{"text": "t"}']
)
def test_a_malformed_user_pair_names_the_file_and_line(tmp_path: Path, line: str):
    path = write_pairs(tmp_path, json.dumps({"query": "fine", "text": "fine text"}), line)
    with pytest.raises(UserError, match=r"pairs\.jsonl:2: expected"):
        build([chunk("d1")], PairOptions(user_pairs=path))


def test_a_user_pair_about_an_unknown_document_is_an_error(tmp_path: Path):
    path = write_pairs(tmp_path, json.dumps({"query": "reset my password", "doc_id": "nope"}))
    with pytest.raises(UserError, match=r"pairs\.jsonl:1: doc_id 'nope' is not a live document"):
        build([chunk("d1")], PairOptions(user_pairs=path))


def test_a_missing_user_pairs_file_is_an_error(tmp_path: Path):
    with pytest.raises(UserError, match=r"missing\.jsonl: no such pairs file"):
        build([chunk("d1")], PairOptions(user_pairs=tmp_path / "missing.jsonl"))


def test_a_user_pair_equal_to_a_mined_pair_is_kept_once(tmp_path: Path):
    (train_doc,) = doc_ids(heldout=False, n=1, options=PairOptions())
    path = write_pairs(tmp_path, json.dumps({"query": "frobnicator setup", "doc_id": train_doc}))
    data = build([chunk(train_doc, heading="Frobnicator setup")], PairOptions(user_pairs=path))
    assert [(p.query.lower(), p.passage) for p in data.train] == [("frobnicator setup", body(train_doc))]


def test_a_user_pair_with_a_null_text_and_a_doc_id_uses_the_document(tmp_path: Path):
    (train_doc,) = doc_ids(heldout=False, n=1, options=PairOptions())
    path = write_pairs(tmp_path, json.dumps({"query": "reset my password", "doc_id": train_doc, "text": None}))
    data = build([chunk(train_doc)], PairOptions(user_pairs=path))
    assert [p.passage for p in data.train] == [body(train_doc)]


def test_train_dataset_has_the_training_pairs_as_anchor_and_positive():
    data = build(corpus(30), PairOptions())
    dataset = data.train_dataset()
    assert dataset.column_names == ["anchor", "positive"]
    assert dataset["anchor"] == [p.query for p in data.train]
    assert dataset["positive"] == [p.passage for p in data.train]
    assert len(dataset) == len(data.train) > 0
