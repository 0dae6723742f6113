"""The demo's data: real documentation that ships with every Python, changed night by night.

Night 1 writes the standard library's documentation (module and member docstrings, as markdown)
and the language reference topics of ``pydoc_data`` (plain text). Later nights edit, delete and
add files, including malformed ones, the way a real documentation source changes.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import shutil
import warnings
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
# The shift: the machine-learning libraries ragtune itself installs, one page per class or function.
ML_MODULES = (
    "sklearn.calibration",
    "sklearn.cluster",
    "sklearn.compose",
    "sklearn.covariance",
    "sklearn.decomposition",
    "sklearn.discriminant_analysis",
    "sklearn.ensemble",
    "sklearn.feature_extraction.text",
    "sklearn.feature_selection",
    "sklearn.gaussian_process",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.manifold",
    "sklearn.metrics",
    "sklearn.mixture",
    "sklearn.naive_bayes",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.random_projection",
    "sklearn.svm",
    "sklearn.tree",
    "torch.nn",
    "torch.optim",
    "torch.optim.lr_scheduler",
    "torch.utils.data",
    "peft",
)
ML_PAGE_CHARS = 1_500  # the summary and first parameters of each docstring: enough to learn the domain
ML_PAGES_PER_MODULE = 12
EDITED = ("json.md", "csv.md", "logging.md")
DELETED = ("sched.md", "reference/debugger.txt")
MALFORMED = {
    "broken/empty.md": b"",
    "broken/latin1.md": "# Caf\u00e9 notes\n\nSaved in Latin-1 by an old editor: caf\u00e9, na\u00efve.\n".encode(
        "latin-1"
    ),
    "broken/nul.txt": b"a log file that was pasted into the docs \x00\x00\x00 by mistake",
}
HELD_BACK = 3  # one page in three of the standard library arrives on night 2, not night 1
ML_DIR = "ml-libraries"
NIGHT_STORIES = (
    "two thirds of the Python standard library's documentation arrive",
    f"the last third arrives; {len(EDITED)} pages edited, {len(DELETED)} removed, "
    f"{len(MALFORMED)} malformed files added",
    "a quiet night: nothing changed",
    "the machine-learning libraries' documentation arrives: the domain shifts",
)


def stage_night(corpus: Path, night: int) -> str:
    """Make the corpus directory look as it does on the given night (1-based); return the story."""
    stash = corpus.parent / f"{corpus.name}-night2"
    if night == 1:
        shutil.rmtree(corpus, ignore_errors=True)
        shutil.rmtree(stash, ignore_errors=True)
        write_stdlib_docs(corpus)
        for page in sorted(p for p in corpus.rglob("*") if p.is_file()):
            if held_back(page.relative_to(corpus)):
                (stash / page.relative_to(corpus)).parent.mkdir(parents=True, exist_ok=True)
                page.rename(stash / page.relative_to(corpus))
    elif night == 2:
        shutil.copytree(stash, corpus, dirs_exist_ok=True)
        shutil.rmtree(stash)
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
    elif night == 4:
        write_ml_docs(corpus / ML_DIR)
    return NIGHT_STORIES[night - 1]


def held_back(page: Path) -> bool:
    """Whether a standard-library page waits for night 2: a stable third, chosen by name."""
    keep = {*EDITED, *DELETED, "subprocess.md"}  # night 2 edits and deletes pages night 1 has
    digest = hashlib.sha256(page.as_posix().encode()).digest()
    return page.as_posix() not in keep and digest[0] % HELD_BACK == 0


def write_stdlib_docs(out: Path) -> int:
    """Write one markdown page per standard-library module and one text page per reference topic."""
    with warnings.catch_warnings():  # deprecation notices of the modules read: nothing the user can act on
        warnings.simplefilter("ignore")
        return _write_stdlib_docs(out)


def _write_stdlib_docs(out: Path) -> int:
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


def write_ml_docs(out: Path) -> int:
    """Write one markdown page per public class or function of the installed ML libraries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _write_ml_docs(out)


def _write_ml_docs(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for module_name in ML_MODULES:
        module = importlib.import_module(module_name)
        package = module_name.split(".")[0]
        pages = 0
        for member in sorted(getattr(module, "__all__", None) or vars(module)):
            if pages == ML_PAGES_PER_MODULE:
                break
            obj = getattr(module, member, None) if not member.startswith("_") else None
            doc = inspect.getdoc(obj) if inspect.isclass(obj) or inspect.isfunction(obj) else None
            if not doc or not str(getattr(obj, "__module__", "")).startswith(package):
                continue
            page = f"# {module_name}.{member}\n\n{_first_paragraphs(doc, ML_PAGE_CHARS)}\n"
            (out / f"{module_name}.{member}.md").write_text(page, encoding="utf-8")
            pages += 1
        written += pages
    return written


def _first_paragraphs(text: str, limit: int) -> str:
    """The paragraphs of ``text`` that fit in ``limit`` characters (at least the first)."""
    kept: list[str] = []
    for paragraph in text.split("\n\n"):
        if kept and sum(len(p) + 2 for p in kept) + len(paragraph) > limit:
            break
        kept.append(paragraph)
    return "\n\n".join(kept)


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
