"""Sources: a directory of text files, a .jsonl/.csv/.parquet file, or a saved Hugging Face dataset.

Readers are lossless and never judge: bytes that are not UTF-8 survive as lone surrogates
(``surrogateescape``), and a row a reader cannot parse comes out with ``read_error`` set.
Validation decides what is accepted. Every reader is a generator, so memory stays flat.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import SourceError
from pipeline.text import html_to_text, markdown_title, rst_title

TEXT_SUFFIXES = (".md", ".txt", ".rst", ".html", ".htm")
REQUIRED_COLUMNS = ("id", "text")
OPTIONAL_COLUMNS = ("title", "metadata")
KINDS = ("directory", "jsonl", "csv", "parquet", "hf_dataset")
# JSON nested deeper than this is not read: every later step that walks a value (str, repr,
# json.dumps) recurses once per level, and Python stops at 1,000 levels, its callers' frames included.
MAX_JSON_DEPTH = 100

# A document may be large; the csv module's default field limit (128 KiB) would stop the reader.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class Record:
    """One row as its source gave it, before validation."""

    id: Any
    text: Any
    title: Any = None
    metadata: Any = None
    origin: str = ""  # where the row came from: a file, or file:line
    read_error: str | None = None
    raw: str | None = None  # the unparsed input, when the reader could not parse it


@dataclass(frozen=True)
class Source:
    """A readable source: its name (the ``source`` of its documents), location and kind."""

    name: str
    path: Path
    kind: str


def open_source(path: Path | str, name: str | None = None) -> Source:
    """Identify a source and check it can be read at all; raise SourceError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    kind = _detect_kind(path)
    source = Source(name=name or path.resolve().name.removesuffix(path.suffix) or "default", path=path, kind=kind)
    if kind in ("csv", "parquet", "hf_dataset"):
        _require_columns(path, _columns(source))
    if kind in ("jsonl", "csv") and path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty; there is nothing to ingest")
    return source


def open_sources(paths: Sequence[Path | str], name: str | None = None) -> list[Source]:
    """Open every path before anything is read, so a bad path stops the ingest before it starts."""
    if not paths:
        raise SourceError("no source given: pass at least one directory or file to ingest")
    return [open_source(path, name) for path in paths]


def read_batches(
    source: Source, batch_size: int, max_file_bytes: int, batch_bytes: int = 16_000_000
) -> Iterator[list[Record]]:
    """Yield the source's records in batches of at most ``batch_size`` rows and about ``batch_bytes`` of text."""
    readers = {
        "directory": lambda: _read_directory(source.path, max_file_bytes),
        "jsonl": lambda: _read_jsonl(source.path),
        "csv": lambda: _read_csv(source.path),
        "parquet": lambda: _read_parquet(source.path, batch_size),
        "hf_dataset": lambda: _read_hf_dataset(source.path),
    }
    batch: list[Record] = []
    size = 0
    for record in readers[source.kind]():
        batch.append(record)
        size += _size(record)
        if len(batch) >= batch_size or size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _size(record: Record) -> int:
    """Roughly how much memory a record's text holds, in characters."""
    return sum(len(v) for v in (record.text, record.title, record.raw) if isinstance(v, str))


def _detect_kind(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return "hf_dataset"
        return "directory"
    suffix = path.suffix.lower()
    kinds = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
    if suffix not in kinds:
        raise SourceError(
            f"{path}: unsupported source type {suffix or '(no extension)'!r}; ragtune reads a directory "
            "of .md/.txt/.rst/.html files, a .jsonl, .csv or .parquet file, or a Hugging Face dataset "
            "saved with save_to_disk"
        )
    return kinds[suffix]


def _columns(source: Source) -> list[str]:
    try:
        if source.kind == "csv":
            with source.path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
                return next(csv.reader(f), [])
        if source.kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(source.path).schema_arrow.names)
        return _hf_columns(source.path)
    except SourceError:
        raise
    except Exception as exc:  # a corrupt file of any kind: say which, and why
        raise SourceError(f"{source.path}: cannot be read as {source.kind}: {exc}") from exc


def _require_columns(path: Path, columns: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SourceError(
            f"{path}: no {' or '.join(repr(c) for c in missing)} column (found: {', '.join(columns) or 'none'}); "
            "ragtune needs columns 'id' and 'text', and reads optional 'title' and 'metadata'"
        )


def _walk(root: Path) -> Iterator[Path]:
    """Text files under root in a stable order, skipping hidden files and folders."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(TEXT_SUFFIXES):
                yield Path(folder, name)


def _read_directory(root: Path, max_file_bytes: int) -> Iterator[Record]:
    real_root = root.resolve()
    for path in _walk(root):
        doc_id = path.relative_to(root).as_posix()
        suffix = path.suffix.lower().lstrip(".")
        problem = None
        try:
            if not path.resolve().is_relative_to(real_root):
                problem = "symlink points outside the source directory"
            elif not stat.S_ISREG((info := path.stat()).st_mode):
                problem = "not a regular file"  # a FIFO or device would block the reader
            elif info.st_size > max_file_bytes:
                problem = f"file is {info.st_size:,} bytes, over the limit of {max_file_bytes:,} (max_file_bytes)"
            else:
                raw = path.read_bytes()
        except OSError as exc:
            problem = f"cannot read the file: {exc.strerror or exc}"
        except RuntimeError:  # Path.resolve raises it, not OSError, for a symlink loop (Python 3.11, 3.12)
            problem = "symlink loop: the link never leads to a file"
        if problem:
            yield Record(id=doc_id, text=None, origin=str(path), read_error=problem)
            continue
        text = raw.decode("utf-8", errors="surrogateescape")
        title, text = _parse_text_file(suffix, text)
        yield Record(id=doc_id, text=text, title=title, metadata={"format": suffix}, origin=str(path))


def _parse_text_file(suffix: str, text: str) -> tuple[str | None, str]:
    if suffix in ("html", "htm"):
        return html_to_text(text)
    if suffix == "md":
        return markdown_title(text), text
    if suffix == "rst":
        return rst_title(text), text
    return None, text


def _read_jsonl(path: Path) -> Iterator[Record]:
    with path.open("rb") as f:
        for lineno, line_bytes in enumerate(f, start=1):
            line = line_bytes.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
            if not line.strip():
                continue
            origin = f"{path}:{lineno}"
            try:
                row = _loads(line)
            except json.JSONDecodeError as exc:
                problem = f"line {lineno} is not valid JSON ({exc.msg}, column {exc.colno})"
                yield Record(id=None, text=None, origin=origin, read_error=problem, raw=line)
                continue
            except RecursionError:
                problem = f"line {lineno} is JSON nested more than {MAX_JSON_DEPTH} levels deep"
                yield Record(id=None, text=None, origin=origin, read_error=problem, raw=line)
                continue
            if not isinstance(row, dict):
                problem = f"line {lineno} is a JSON {type(row).__name__}, not an object"
                yield Record(id=None, text=None, origin=origin, read_error=problem, raw=line)
                continue
            yield _record_from_mapping(row, origin)


def _read_csv(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Record(id=None, text=None, origin=f"{path}:{reader.line_num}", read_error=f"bad CSV: {exc}")
                continue
            origin = f"{path}:{reader.line_num}"
            if None in row:  # DictReader files surplus fields under the key None
                width = len(reader.fieldnames or [])
                problem = f"row has {width + len(row[None])} fields, the header has {width}"
                yield Record(id=row.get("id"), text=None, origin=origin, read_error=problem, raw=json.dumps(row))
                continue
            cleaned = {k: (v if v != "" else None) for k, v in row.items()}
            yield _record_from_mapping(cleaned, origin)


def _read_parquet(path: Path, batch_size: int) -> Iterator[Record]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    columns = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in parquet.schema_arrow.names]
    rows = (row for batch in parquet.iter_batches(batch_size=batch_size, columns=columns) for row in batch.to_pylist())
    yield from _records_from_rows(rows, str(path))


def _hf_columns(path: Path) -> list[str]:
    datasets = _load_hf_dataset(path)
    return sorted(set.intersection(*(set(d.column_names) for d in datasets.values())))


def _read_hf_dataset(path: Path) -> Iterator[Record]:
    for split, dataset in _load_hf_dataset(path).items():
        columns = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in dataset.column_names]
        # A Dataset iterates its rows from the memory-mapped Arrow files, a chunk at a time.
        yield from _records_from_rows(dataset.select_columns(columns), f"{path}[{split}]")


def _load_hf_dataset(path: Path) -> dict[str, Any]:
    """The splits of a dataset saved with ``save_to_disk`` (memory-mapped, not loaded)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises several types for a damaged folder
        raise SourceError(f"{path}: cannot be read as a saved Hugging Face dataset: {exc}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        return dict(loaded)
    return {"data": loaded}


def _records_from_rows(rows: Iterable[Mapping[str, Any]], where: str) -> Iterator[Record]:
    for number, row in enumerate(rows):
        yield _record_from_mapping(row, f"{where}#{number}")


def _record_from_mapping(row: Mapping[str, Any], origin: str) -> Record:
    doc_id = row.get("id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)  # integer ids are common and unambiguous
    metadata = row.get("metadata")
    problem = None
    if isinstance(metadata, str):  # CSV and some parquet files carry metadata as JSON text
        try:
            metadata = _loads(metadata)
        except json.JSONDecodeError:
            pass  # left as text: validation reports it is not an object
        except RecursionError:
            problem = f"metadata is JSON nested more than {MAX_JSON_DEPTH} levels deep"
    return Record(
        id=doc_id,
        text=row.get("text"),
        title=row.get("title"),
        metadata=metadata,
        origin=origin,
        read_error=problem,
    )


def _loads(text: str) -> Any:
    """Parse JSON; raise RecursionError if it nests deeper than MAX_JSON_DEPTH (json's own limit is higher)."""
    value = json.loads(text)
    if _depth(value) > MAX_JSON_DEPTH:
        raise RecursionError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _depth(value: object) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest
