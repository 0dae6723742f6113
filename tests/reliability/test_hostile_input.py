"""Hostile input through the real CLI: every bad row quarantined with its reason, every good one indexed.

One ``ragtune ingest`` of a directory, a .jsonl and a .csv file, each mixing plenty of good rows with
every kind of bad input a source can hold; then ``ragtune refresh``. When the tests run as root,
the ingest runs without CAP_DAC_OVERRIDE, so that a chmod 000 file really cannot be read (root
ignores file modes).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.cli import cli_env

pytestmark = pytest.mark.e2e

MAX_FILE_BYTES = 1_500_000
BATCH_SIZE = 40  # several batches per source, so a duplicate can come back in a later one
SETPRIV = shutil.which("setpriv")
DROP_DAC = [
    str(SETPRIV),
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
]
# Root reads a chmod 000 file anyway; without setpriv to drop that power, leave the case out.
CAN_LOCK = os.geteuid() != 0 or SETPRIV is not None


@dataclass
class Expected:
    """What the generated sources hold: the good ids per source, and each bad row's reasons by origin."""

    good: dict[str, set[str]] = field(default_factory=dict)
    bad: dict[str, list[str]] = field(default_factory=dict)  # origin -> reason messages, in order
    kinds: set[str] = field(default_factory=set)  # one name per kind of bad input

    def hold(self, origin: str | Path, kind: str, *reasons: str) -> None:
        self.bad[str(origin)] = list(reasons)
        self.kinds.add(kind)

    @property
    def rows(self) -> int:
        return sum(len(ids) for ids in self.good.values()) + len(self.bad)


@pytest.fixture
def env(prefect_api, database_url, tmp_path, tiny_model) -> dict[str, str]:
    env = cli_env(tmp_path / "home", database_url, prefect_api, tiny_model)
    env.update(RAGTUNE_MAX_FILE_BYTES=str(MAX_FILE_BYTES), RAGTUNE_BATCH_SIZE=str(BATCH_SIZE))
    return env


def ragtune(env: dict[str, str], *args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [*(prefix or []), sys.executable, "-m", "ragtune", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


def ok_json(env: dict[str, str], *args: str, prefix: list[str] | None = None) -> dict:
    result = ragtune(env, *args, "--json", prefix=prefix)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def write_good_pages(root: Path) -> set[str]:
    """Pages in every format, some of them hard to read; return their ids."""
    good: set[str] = set()
    (root / "guides" / "deeper").mkdir(parents=True)
    for i in range(10):
        page = f"# Page {i}\n\nPage {i} explains topic number {i} in plain words.\n\n## Details\n\nMore on {i}.\n"
        (root / f"page{i:02}.md").write_text(page)
        good.add(f"page{i:02}.md")
    for i in range(8):
        (root / f"note{i:02}.txt").write_text(f"Note {i}: remember to water plant number {i}.\n")
        good.add(f"note{i:02}.txt")
    for i in range(6):
        (root / f"chapter{i:02}.rst").write_text(f"Chapter {i}\n==========\n\nThe story of chapter {i}.\n")
        good.add(f"chapter{i:02}.rst")
    for i in range(6):
        html = f"<html><head><title>Web {i}</title></head><body><h1>Web {i}</h1><p>Web page {i}.</p></body></html>"
        (root / f"web{i:02}.html").write_text(html)
        good.add(f"web{i:02}.html")
    for i in range(3):
        (root / "guides" / "deeper" / f"guide{i}.md").write_text(f"# Guide {i}\n\nA nested guide, number {i}.\n")
        good.add(f"guides/deeper/guide{i}.md")
    (root / "inside-link.md").symlink_to(root / "page00.md")  # a link within the source is a file like any
    good.add("inside-link.md")
    # 100,000 nested <div>s: the HTML reader used to spend minutes editing the tree.
    depth = 100_000
    (root / "deep.html").write_text(
        "<div>" * depth + "<h1>Deep page</h1><p>Found at the bottom.</p>" + "</div>" * depth
    )
    good.add("deep.html")
    # A long run of spaces in a heading line: the heading regex used to backtrack for hours on it.
    (root / "spaced-section.md").write_text("# Spaced\n\nIntro.\n\n## A" + " " * 20_000 + "section\n\nBody text.\n")
    good.add("spaced-section.md")
    (root / "unicode.md").write_text("# Ünïcödé\n\nEmoji 🚀, CJK 漢字, RTL \u202eabc, a bell \x07 and a tab\t.\n")
    good.add("unicode.md")
    (root / "link.html").write_text("https://example.com/looks-like-a-url")
    good.add("link.html")
    (root / ".hidden.md").write_text("# Hidden\n\nNot a document.\n")  # hidden files are not read
    (root / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # nor files of other types
    return good


def write_bad_files(root: Path, outside: Path, expected: Expected) -> None:
    """Every kind of file a directory reader can meet, with the reasons it is held back."""

    def hold(name: str, kind: str, *reasons: str) -> None:
        expected.hold(root / name, kind, *reasons)

    (root / "binary.txt").write_bytes(bytes(range(256)) * 4)
    hold("binary.txt", "binary", "text contains NUL bytes", "not valid UTF-8 (in text)")
    (root / "latin1.md").write_bytes("# Caf\u00e9\n\ncr\u00e8me br\u00fbl\u00e9e".encode("latin-1"))
    hold("latin1.md", "invalid UTF-8", "not valid UTF-8 (in title, text)")
    # Short and without a "<": Beautiful Soup's check for a file name used to raise on its bytes.
    (root / "fragment.html").write_bytes(b"caf\xe9 cr\xe8me")
    hold("fragment.html", "invalid UTF-8", "not valid UTF-8 (in text)")
    (root / "nul.txt").write_bytes(b"before\x00after")
    hold("nul.txt", "NUL bytes", "text contains NUL bytes")
    (root / "empty.md").write_bytes(b"")
    hold(
        "empty.md",
        "empty",
        "text is empty or only whitespace",
        "text has 0 characters; the allowed range is 1 to 1,000,000",
    )
    (root / "blank.txt").write_text("  \n\t\n   \n")
    hold("blank.txt", "whitespace only", "text is empty or only whitespace")
    (root / "too-large.txt").write_text("x" * (MAX_FILE_BYTES + 1))
    hold(
        "too-large.txt",
        "larger than max_file_bytes",
        "could not be read: file is 1,500,001 bytes, over the limit of 1,500,000 (max_file_bytes)",
        "text is missing",
    )
    words = "lorem ipsum dolor sit amet " * 20
    huge = "<html><body>" + f"<p>{words}</p>\n" * 2_100 + "</body></html>"
    assert len(huge) < MAX_FILE_BYTES
    (root / "huge.html").write_text(huge)
    chars = 2_100 * len(words.strip()) + 2_099 * 2  # paragraphs between blank lines
    hold("huge.html", "huge HTML", f"text has {chars:,} characters; the allowed range is 1 to 1,000,000")
    (root / "spaced-title.md").write_text("# Spaced" + " " * 20_000 + "title\n\nBody.\n")
    hold("spaced-title.md", "title too long", "title has 20,011 characters; at most 1,000 are allowed")
    (outside / "secret.md").write_text("# Secret\n\nOutside the source.\n")
    (root / "outside-link.md").symlink_to(outside / "secret.md")
    hold(
        "outside-link.md",
        "symlink outside the root",
        "could not be read: symlink points outside the source directory",
        "text is missing",
    )
    (root / "dangling.md").symlink_to(root / "gone.md")
    hold(
        "dangling.md",
        "dangling symlink",
        "could not be read: cannot read the file: No such file or directory",
        "text is missing",
    )
    latin1_name = os.fsdecode(b"caf\xe9.md")  # a Latin-1 file name: not UTF-8, so the id cannot be stored
    (root / latin1_name).write_text("# Café\n\nA fine page.\n")
    # Kept in the quarantine with its bytes written out, as PostgreSQL cannot store the name itself.
    expected.hold(f"{root}/caf\\xe9.md", "file name not UTF-8", "not valid UTF-8 (in id)")
    (root / "loop-a.md").symlink_to(root / "loop-b.md")
    (root / "loop-b.md").symlink_to(root / "loop-a.md")
    for name in ("loop-a.md", "loop-b.md"):
        hold(name, "symlink loop", "could not be read: symlink loop: the link never leads to a file", "text is missing")
    os.mkfifo(root / "pipe.txt")  # reading it would block forever
    hold("pipe.txt", "FIFO", "could not be read: not a regular file", "text is missing")
    if CAN_LOCK:
        (root / "locked.md").write_text("# Locked\n\nNobody may read this.\n")
        (root / "locked.md").chmod(0)
        hold("locked.md", "unreadable", "could not be read: cannot read the file: Permission denied", "text is missing")


def write_jsonl(path: Path, expected: Expected) -> None:
    """Good rows (some at the edge of what is allowed) and every kind of line a JSON reader can meet."""
    good = {"dup-late", "1001", "edge-title", "edge-metadata", "crlf"} | {f"row-{i}" for i in range(70)}
    lines: list[bytes] = [json.dumps({"id": "dup-late", "text": "A row that comes back in a later batch."}).encode()]
    for i in range(70):
        row = {"id": f"row-{i}", "title": f"Row {i}", "text": f"Row {i} is about subject {i}.", "metadata": {"n": i}}
        lines.append(json.dumps(row).encode())
    lines += [b"", b"   \r"]  # blank lines are not rows
    lines += [
        json.dumps({"id": 1001, "text": "An integer id is taken as its string."}).encode(),
        json.dumps({"id": "edge-title", "title": "t" * 1000, "text": "A title exactly at the limit."}).encode(),
        json.dumps({"id": "edge-metadata", "text": "Metadata 32 levels deep.", "metadata": nested(32)}).encode(),
        b'{"id": "crlf", "text": "A line that ends in CR LF, and \\u00e9 escaped."}\r',
    ]
    too_deep = "could not be read: line {} is JSON nested more than 100 levels deep"
    bad: list[tuple[object, str, list[str]]] = [  # the row (or the line's bytes), its kind, its reasons
        (
            {"id": "dup-late", "text": "It is back."},
            "duplicate id across batches",
            ["id already appeared earlier in this ingest"],
        ),
        (
            b'{"id": "broken", "text": "unterminated',
            "malformed JSON",
            ["could not be read: line {} is not valid JSON (Unterminated string starting at, column 26)"],
        ),
        (["an", "array"], "JSON array line", ["could not be read: line {} is a JSON list, not an object"]),
        ("a string", "JSON string line", ["could not be read: line {} is a JSON str, not an object"]),
        (b"[" * 100_000 + b"]" * 100_000, "deeply nested JSON", [too_deep]),  # json.loads: RecursionError
        # Parsed, but too deep for what comes after: json.dumps of the quarantined row used to fail.
        (
            b'{"id": "meta-965", "text": "x", "metadata": ' + b'{"k": ' * 964 + b"{}" + b"}" * 965,
            "deeply nested JSON",
            [too_deep],
        ),
        ({"id": "meta-100", "text": "x", "metadata": nested(100)}, "deeply nested JSON", [too_deep]),
        (
            {"id": "meta-99", "text": "x", "metadata": nested(99)},
            "metadata too deep",
            ["metadata is nested 99 levels deep; at most 32 are allowed"],
        ),
        (
            {"id": "meta-33", "text": "x", "metadata": nested(33)},
            "metadata too deep",
            ["metadata is nested 33 levels deep; at most 32 are allowed"],
        ),
        (
            {"id": ["a", "b"], "text": "An id that is a list."},
            "id of the wrong type",
            ["id must be a string or an integer, not list"],
        ),
        (
            {"id": True, "text": "An id that is a boolean."},
            "id of the wrong type",
            ["id must be a string or an integer, not bool"],
        ),
        ({"id": "num-text", "text": 42}, "text of the wrong type", ["text must be a string, not int"]),
        ({"id": "list-text", "text": ["a"]}, "text of the wrong type", ["text must be a string, not list"]),
        (
            {"id": "num-title", "title": 7, "text": "A title that is a number."},
            "title of the wrong type",
            ["title must be a string, not int"],
        ),
        (
            {"id": "meta-str", "text": "Metadata that is not JSON.", "metadata": "not json {"},
            "metadata of the wrong type",
            ["metadata must be a JSON object, not str"],
        ),
        (
            {"id": "meta-list", "text": "Metadata that is a list.", "metadata": [1, 2]},
            "metadata of the wrong type",
            ["metadata must be a JSON object, not list"],
        ),
        (
            {"id": "dup", "text": "One of two rows with this id."},
            "duplicate id in a batch",
            ["id 'dup' appears more than once in the batch"],
        ),
        (
            {"id": "dup", "text": "The other row with this id."},
            "duplicate id in a batch",
            ["id 'dup' appears more than once in the batch"],
        ),
        ({"text": "A row without an id."}, "id missing", ["id is missing"]),
        ({"id": "null-text", "text": None}, "text missing", ["text is missing"]),
        ({}, "empty object", ["id is missing", "text is missing"]),
        ({"id": "nul-text", "text": "a\u0000b"}, "NUL bytes", ["text contains NUL bytes"]),
        ({"id": "nul\u0000id", "text": "An id with a NUL byte."}, "NUL bytes", ["id contains NUL bytes"]),
        (
            {"id": "nul-meta", "text": "NUL in metadata.", "metadata": {"k": "a\u0000b"}},
            "NUL bytes",
            ["metadata contains NUL bytes"],
        ),
        ({"id": "blank-text", "text": " \t\n "}, "whitespace only", ["text is empty or only whitespace"]),
        (
            {"id": "long-title", "title": "t" * 1001, "text": "A title over the limit."},
            "title too long",
            ["title has 1,001 characters; at most 1,000 are allowed"],
        ),
        (b'{"id": "bad-bytes", "text": "caf\xe9 cr\xe8me"}', "invalid UTF-8", ["not valid UTF-8 (in text)"]),
        (
            b'{"id": "bad-id-bytes\xff", "text": "An id that is not UTF-8."}',
            "invalid UTF-8",
            ["not valid UTF-8 (in id)"],
        ),
        ({"id": "lone\ud800", "text": "A lone surrogate in the id."}, "invalid UTF-8", ["not valid UTF-8 (in id)"]),
    ]
    for row, kind, reasons in bad:
        lines.append(row if isinstance(row, bytes) else json.dumps(row).encode())
        parse_failed = reasons[0].startswith("could not be read: line")
        messages = [r.format(len(lines)) for r in reasons] + (
            ["id is missing", "text is missing"] if parse_failed else []
        )
        expected.hold(f"{path}:{len(lines)}", kind, *messages)
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected.good[path.stem] = good


def nested(levels: int) -> dict:
    """A JSON object nested ``levels`` deep."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def write_csv(path: Path, expected: Expected) -> None:
    """Good rows with quotes and newlines in them, and rows a CSV reader cannot make sense of."""
    good: set[str] = set()
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "title", "text", "metadata"])
        for i in range(30):
            writer.writerow([f"c{i}", f"Cell {i}", f'Cell {i} says "hello",\nover two lines.', json.dumps({"i": i})])
            good.add(f"c{i}")
        rows = 61  # the header is line 1 and each good row spans two lines: a row's origin is its last line

        def held(cells: list[str], kind: str, *reasons: str) -> None:
            nonlocal rows
            writer.writerow(cells)
            rows += 1
            expected.hold(f"{path}:{rows}", kind, *reasons)

        held(
            ["x1", "T", "text", "{}", "surplus"],
            "too many fields",
            "could not be read: row has 5 fields, the header has 4",
            "text is missing",
        )
        held(["x2", "T", "", "{}"], "text missing", "text is missing")
        held(
            ["x3", "T", "Metadata not JSON.", "{oops"],
            "metadata of the wrong type",
            "metadata must be a JSON object, not str",
        )
        held(
            ["x4", "T", "Metadata too deep to parse.", "[" * 100_000 + "]" * 100_000],
            "deeply nested JSON",
            "could not be read: metadata is JSON nested more than 100 levels deep",
            "metadata must be a JSON object, not str",  # it is kept as the text it was
        )
        held(["c3", "T", "Again.", "{}"], "duplicate id in a batch", "id 'c3' appears more than once in the batch")
    expected.good[path.stem] = good - {"c3"}
    expected.hold(f"{path}:9", "duplicate id in a batch", "id 'c3' appears more than once in the batch")


@pytest.fixture
def hostile(tmp_path) -> tuple[list[Path], Expected]:
    expected = Expected()
    root, outside = tmp_path / "corpus", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    expected.good[root.name] = write_good_pages(root)
    write_bad_files(root, outside, expected)
    write_jsonl(tmp_path / "feed.jsonl", expected)
    write_csv(tmp_path / "table.csv", expected)
    return [root, tmp_path / "feed.jsonl", tmp_path / "table.csv"], expected


def test_every_good_row_is_indexed_and_every_bad_one_quarantined_with_its_reason(env, hostile, database_url, tmp_path):
    paths, expected = hostile
    assert len(expected.kinds) >= 12, sorted(expected.kinds)
    assert {
        "binary",
        "invalid UTF-8",
        "NUL bytes",
        "empty",
        "whitespace only",
        "larger than max_file_bytes",
        "huge HTML",
        "symlink outside the root",
        "malformed JSON",
        "JSON array line",
        "duplicate id in a batch",
        "id of the wrong type",
        "text of the wrong type",
        "metadata of the wrong type",
    } <= expected.kinds
    prefix, ingest_env = None, env
    if os.geteuid() == 0 and CAN_LOCK:
        prefix = DROP_DAC
        locked = paths[0] / "locked.md"
        probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(locked)!r}).read()"], capture_output=True)
        assert probe.returncode != 0 and b"PermissionError" in probe.stderr, "setpriv did not take away root's reads"
        ingest_env = {**env, "RAGTUNE_DATABASE_URL": linked_socket(database_url, tmp_path / "socket")}

    report = ok_json(ingest_env, "ingest", *map(str, paths), prefix=prefix)

    assert report["sources"] == ["corpus", "feed", "table"]
    assert report["rows_read"] == expected.rows
    assert report["inserted"] + report["updated"] + report["unchanged"] + report["quarantined"] == report["rows_read"]
    assert (report["inserted"], report["quarantined"]) == (expected.rows - len(expected.bad), len(expected.bad))
    assert sum(report["problems"].values()) >= report["quarantined"]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT source, doc_id FROM documents WHERE deleted_at IS NULL").fetchall()
    assert by_source(stored) == expected.good

    held = ok_json(env, "quarantine", "list", "--all", "--limit", "1000")["rows"]
    reasons = {row["origin"]: [r["message"] for r in row["reasons"]] for row in held}
    assert len(held) == len(reasons)
    assert sorted(reasons.keys() ^ expected.bad.keys()) == []
    assert {"caf\\xe9.md", "nul\\x00id", "lone\\ud800"} <= {row["id"] for row in held}  # bad bytes written out
    assert {origin: got for origin, got in reasons.items() if got != expected.bad[origin]} == {}

    refreshed = ok_json(env, "refresh")
    assert refreshed["embedded"] > 0
    table = ok_json(env, "status")["active_index"]
    with psycopg.connect(database_url) as conn:
        indexed = conn.execute(
            sql.SQL(
                "SELECT c.source, c.doc_id, count(*), count(v.content_hash) FROM chunks c "
                "LEFT JOIN {} v USING (content_hash) GROUP BY c.source, c.doc_id"
            ).format(sql.Identifier(table))
        ).fetchall()
    assert by_source(indexed) == expected.good
    assert [(s, d) for s, d, chunks, vectors in indexed if not 0 < chunks == vectors] == []


def linked_socket(database_url: str, folder: Path) -> str:
    """The database URL through a hard link of the server's socket in ``folder``.

    The socket lives in the server's data directory (mode 700, owned by the server's user), which a
    process without CAP_DAC_OVERRIDE cannot enter; a link elsewhere reaches the same socket.
    """
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    host = str(params.get("host") or "")
    if not host.startswith("/"):  # TCP: nothing to link
        return database_url
    folder.mkdir()
    name = f".s.PGSQL.{params.get('port') or 5432}"
    os.link(Path(host, name), folder / name)
    return psycopg.conninfo.make_conninfo(database_url, host=str(folder))


def by_source(rows: list[tuple]) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for source, doc_id, *_ in rows:
        grouped.setdefault(source, set()).add(doc_id)
    return grouped
