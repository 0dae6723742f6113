"""Source readers: what a user's files become, and how unreadable input is reported."""

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from pipeline.errors import SourceError
from pipeline.sources import open_source, open_sources, read_batches


def records(source, batch_size=100, max_file_bytes=1_000_000):
    return [r for batch in read_batches(source, batch_size, max_file_bytes) for r in batch]


def test_directory_ids_are_relative_paths_and_titles_come_from_each_format(tmp_path: Path):
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "intro.md").write_text("Preface\n\n# Getting started\n\nInstall it.\n")
    (tmp_path / "api.rst").write_text("=========\nAPI guide\n=========\n\nCalls.\n")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Release notes</title><script>track()</script></head>"
        "<body><h2>Fixes</h2><p>Faster <b>search</b>.</p></body></html>"
    )
    (tmp_path / "notes.txt").write_text("plain notes")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.md").write_text("# secret")

    by_id = {r.id: r for r in records(open_source(tmp_path))}

    assert sorted(by_id) == ["api.rst", "guide/intro.md", "notes.txt", "page.html"]
    assert by_id["guide/intro.md"].title == "Getting started"
    assert by_id["api.rst"].title == "API guide"
    assert by_id["page.html"].title == "Release notes"
    assert by_id["page.html"].text == "## Fixes\n\nFaster search."
    assert "track()" not in by_id["page.html"].text
    assert by_id["notes.txt"].title is None
    assert by_id["guide/intro.md"].metadata == {"format": "md"}


def test_directory_source_is_named_after_the_folder_unless_named(tmp_path: Path):
    folder = tmp_path / "handbook"
    folder.mkdir()
    assert open_source(folder).name == "handbook"
    assert open_source(folder, name="hr").name == "hr"
    (tmp_path / "faq.jsonl").write_text("{}\n")
    assert open_source(tmp_path / "faq.jsonl").name == "faq"


def test_undecodable_bytes_survive_reading_so_validation_can_see_them(tmp_path: Path):
    (tmp_path / "latin1.md").write_bytes("caf\u00e9".encode("latin-1"))
    (record,) = records(open_source(tmp_path))
    assert record.text.encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_oversized_files_are_flagged_without_being_read(tmp_path: Path):
    (tmp_path / "big.txt").write_text("x" * 5000)
    (record,) = records(open_source(tmp_path), max_file_bytes=1000)
    assert record.text is None
    assert record.read_error == "file is 5,000 bytes, over the limit of 1,000 (max_file_bytes)"


def test_symlink_leaving_the_source_directory_is_flagged(tmp_path: Path):
    outside = tmp_path / "outside.md"
    outside.write_text("# private")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "link.md").symlink_to(outside)
    (record,) = records(open_source(root))
    assert record.read_error == "symlink points outside the source directory"
    assert record.text is None


def test_dangling_symlink_and_fifo_are_flagged_not_read(tmp_path: Path):
    (tmp_path / "gone.md").symlink_to(tmp_path / "deleted.md")
    os.mkfifo(tmp_path / "pipe.md")
    rows = {r.id: r for r in records(open_source(tmp_path))}
    assert rows["gone.md"].read_error == "cannot read the file: No such file or directory"
    assert rows["pipe.md"].read_error == "not a regular file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_flagged(tmp_path: Path):
    (tmp_path / "locked.md").write_text("# locked")
    (tmp_path / "locked.md").chmod(0)
    (record,) = records(open_source(tmp_path))
    assert record.read_error.startswith("cannot read the file")


def test_jsonl_reports_malformed_lines_and_keeps_reading(tmp_path: Path):
    path = tmp_path / "faq.jsonl"
    path.write_text(
        '{"id": 1, "text": "one", "title": "First", "metadata": {"lang": "en"}}\n'
        '{"id": "2", "text": "two"\n'
        "\n"
        '["not", "an", "object"]\n'
        '{"id": "4", "text": "four"}\n'
    )
    rows = records(open_source(path))
    assert [r.id for r in rows] == ["1", None, None, "4"]
    assert rows[0].title == "First" and rows[0].metadata == {"lang": "en"}
    assert rows[1].read_error.startswith("line 2 is not valid JSON")
    assert rows[1].raw == '{"id": "2", "text": "two"'
    assert rows[2].read_error == "line 4 is a JSON list, not an object"
    assert rows[3].origin == f"{path}:5"


def test_csv_parses_metadata_json_and_flags_ragged_rows(tmp_path: Path):
    path = tmp_path / "docs.csv"
    path.write_text('id,title,text,metadata\na,A,alpha,"{""k"": 1}"\nb,,beta,\nc,C,gamma,{},surplus\n')
    rows = records(open_source(path))
    assert (rows[0].id, rows[0].title, rows[0].text, rows[0].metadata) == ("a", "A", "alpha", {"k": 1})
    assert rows[1].title is None and rows[1].metadata is None
    assert rows[2].read_error == "row has 5 fields, the header has 4"


def test_csv_without_a_text_column_is_refused_before_reading(tmp_path: Path):
    path = tmp_path / "people.csv"
    path.write_text("id,name\n1,Ada\n")
    with pytest.raises(SourceError, match=r"people.csv: no 'text' column \(found: id, name\)"):
        open_source(path)


def test_parquet_and_saved_hugging_face_dataset_are_read(tmp_path: Path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": ["p1", "p2"], "text": ["one", "two"], "title": ["T1", None], "extra": [1, 2]})
    pq.write_table(table, tmp_path / "docs.parquet")
    datasets.Dataset.from_dict({"id": ["h1"], "text": ["hello"]}).save_to_disk(str(tmp_path / "hf"))

    parquet = records(open_source(tmp_path / "docs.parquet"), batch_size=1)
    hf = records(open_source(tmp_path / "hf"))

    assert [(r.id, r.text, r.title) for r in parquet] == [("p1", "one", "T1"), ("p2", "two", None)]
    assert [(r.id, r.text) for r in hf] == [("h1", "hello")]
    assert open_source(tmp_path / "hf").kind == "hf_dataset"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "missing.jsonl: no such file or directory"),
        ("book.xlsx", b"PK", "book.xlsx: unsupported source type '.xlsx'"),
        ("empty.jsonl", b"", "empty.jsonl: the file is empty"),
        ("bad.parquet", b"not parquet at all", "bad.parquet: cannot be read as parquet"),
    ],
)
def test_unusable_sources_are_refused_with_a_message_naming_them(tmp_path: Path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(SourceError, match=message.replace(".", r"\.").replace("(", r"\(")):
        open_source(tmp_path / name)


def test_no_paths_is_refused():
    with pytest.raises(SourceError, match="no source given"):
        open_sources([])


def test_reading_streams_in_batches_with_flat_memory(tmp_path: Path):
    path = tmp_path / "large.jsonl"
    with path.open("w") as f:
        for i in range(20_000):
            f.write(json.dumps({"id": str(i), "text": "word " * 200}) + "\n")  # ~20 MB in all
    batches = read_batches(open_source(path), 500, 1_000_000)
    tracemalloc.start()
    sizes = [len(batch) for batch in batches]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sizes == [500] * 40
    assert peak < 4_000_000, f"reading 20 MB held {peak:,} bytes at once"


def test_batches_end_at_the_row_limit_or_the_text_size_limit_whichever_comes_first(tmp_path: Path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": "x" * 1000}) + "\n" for i in range(10)))
    by_rows = [len(b) for b in read_batches(open_source(path), batch_size=4, max_file_bytes=10**6)]
    by_bytes = [len(b) for b in read_batches(open_source(path), 100, 10**6, batch_bytes=2500)]
    assert by_rows == [4, 4, 2]
    assert by_bytes == [3, 3, 3, 1]
