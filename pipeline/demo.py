"""The demo's data: real documentation that ships with every Python, changed night by night.

Night 1 writes the standard library's documentation (module and member docstrings, as markdown)
and the language reference topics of ``pydoc_data`` (plain text). Later nights edit, delete and
add files, including malformed ones, the way a real documentation source changes.
"""

from __future__ import annotations

import importlib
import inspect
import shutil
from pathlib import Path

STDLIB_MODULES = (
    "abc",
    "argparse",
    "array",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "codecs",
    "collections",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "gettext",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html.parser",
    "http.client",
    "inspect",
    "io",
    "itertools",
    "json",
    "locale",
    "logging",
    "math",
    "operator",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "selectors",
    "shutil",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "traceback",
    "typing",
    "unicodedata",
    "unittest",
    "urllib.parse",
    "uuid",
    "warnings",
    "weakref",
    "xml.etree.ElementTree",
    "zipfile",
)
MAX_MEMBERS = 25
EDITED = ("json.md", "csv.md", "logging.md")
DELETED = ("sched.md", "reference/debugger.txt")
MALFORMED = {
    "broken/empty.md": b"",
    "broken/latin1.md": "# Caf\u00e9 notes\n\nSaved in Latin-1 by an old editor: caf\u00e9, na\u00efve.\n".encode(
        "latin-1"
    ),
    "broken/nul.txt": b"a log file that was pasted into the docs \x00\x00\x00 by mistake",
}
NIGHT_STORIES = (
    "the Python standard library's documentation arrives",
    f"{len(EDITED)} pages edited, {len(DELETED)} removed, {len(MALFORMED)} malformed files added",
    "a quiet night: nothing changed",
)


def stage_night(corpus: Path, night: int) -> str:
    """Make the corpus directory look as it does on the given night (1-based); return the story."""
    if night == 1:
        shutil.rmtree(corpus, ignore_errors=True)
        write_stdlib_docs(corpus)
    elif night == 2:
        for name in EDITED:
            if not (corpus / name).exists():
                continue  # a module without a docstring on this Python has no page to edit
            with (corpus / name).open("a", encoding="utf-8") as f:
                f.write("\n## Changed in this release\n\nThe examples above were revised for clarity.\n")
        for name in DELETED:
            (corpus / name).unlink(missing_ok=True)
        for name, content in MALFORMED.items():
            (corpus / name).parent.mkdir(parents=True, exist_ok=True)
            (corpus / name).write_bytes(content)
    return NIGHT_STORIES[night - 1]


def write_stdlib_docs(out: Path) -> int:
    """Write one markdown page per standard-library module and one text page per reference topic."""
    from pydoc_data.topics import topics

    (out / "reference").mkdir(parents=True, exist_ok=True)
    written = 0
    for name in STDLIB_MODULES:
        page = module_page(name)
        if page:
            (out / f"{name}.md").write_text(page, encoding="utf-8")
            written += 1
    for topic, text in sorted(topics.items()):
        (out / "reference" / f"{topic}.txt").write_text(text, encoding="utf-8")
        written += 1
    return written


def module_page(name: str) -> str | None:
    """A module's docstring and its public members' docstrings as one markdown page."""
    module = importlib.import_module(name)
    doc = inspect.getdoc(module)
    if not doc:
        return None
    sections = [f"# {name}", doc]
    members = [
        (member, obj)
        for member, obj in vars(module).items()
        if not member.startswith("_")
        and getattr(obj, "__module__", None) == module.__name__
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and inspect.getdoc(obj)
    ]
    for member, obj in sorted(members)[:MAX_MEMBERS]:
        sections += [f"## {name}.{member}", inspect.getdoc(obj) or ""]
    return "\n\n".join(sections) + "\n"
