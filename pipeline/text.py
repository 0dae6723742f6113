"""Plain text and titles out of the document formats ragtune reads."""

from __future__ import annotations

import itertools
import re

_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_BLOCK_TAGS = ("p", "div", "section", "article", "li", "tr", "pre", "blockquote", "br", "table", "ul", "ol", "dt", "dd")
_INVISIBLE_TAGS = ("script", "style", "noscript", "template", "head", "svg")
_ATX_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


def html_to_text(html: str) -> tuple[str | None, str]:
    """Return (title, text) of an HTML page; headings become markdown '#' lines so sections survive."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup.find_all(_INVISIBLE_TAGS):
        tag.decompose()
    for tag in soup.find_all(_HEADING_TAGS):
        level = int(tag.name[1])
        tag.replace_with(f"\n\n{'#' * level} {tag.get_text(' ', strip=True)}\n\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    text = _tidy(soup.get_text())
    if not title:
        first = _ATX_HEADING.search(text)
        title = first.group(1) if first else None
    return title or None, text


def markdown_title(text: str) -> str | None:
    """The first level-one ATX heading of a markdown document."""
    match = _ATX_HEADING.search(text)
    return match.group(1).strip() if match else None


def rst_title(text: str) -> str | None:
    """The first underlined section title of a reStructuredText document (overlines allowed)."""
    for line, below in itertools.pairwise(text.splitlines()):
        if title := rst_underlined(line, below):
            return title
    return None


def rst_underlined(line: str, below: str) -> str | None:
    """The title, if ``line`` is a reStructuredText section title underlined by ``below``."""
    title = line.strip()
    if title and not _RST_UNDERLINE.match(line) and _RST_UNDERLINE.match(below) and len(below.strip()) >= len(title):
        return title
    return None


def is_rst_underline(line: str) -> bool:
    """Whether a line is a reStructuredText title adornment (=====, -----, ~~~~~ ...)."""
    return bool(_RST_UNDERLINE.match(line))


def _tidy(text: str) -> str:
    """Collapse runs of spaces within lines and of blank lines between them."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
