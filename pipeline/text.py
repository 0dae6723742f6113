"""Plain text and titles out of the document formats ragtune reads."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_BLOCK_TAGS = ("p", "div", "section", "article", "li", "tr", "pre", "blockquote", "br", "table", "ul", "ol", "dt", "dd")
_INVISIBLE_TAGS = ("script", "style", "noscript", "template", "head", "svg")
# Greedy to the end of the line, the closing '#'s cut by atx_heading_text: the lazy form
# r"^#\s+(.+?)\s*#*\s*$" backtracks cubically on a long run of spaces in a heading line.
_ATX_HEADING = re.compile(r"^#\s+(.+)$", re.MULTILINE)
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


def html_to_text(html: str) -> tuple[str | None, str]:
    """Return (title, text) of an HTML page; headings become markdown '#' lines so sections survive."""
    from bs4 import BeautifulSoup

    # bs4 checks short markup without "<" or a newline for looking like a file name or URL: it warns,
    # and raises on the lone surrogates that stand for bytes that are not UTF-8. A leading newline
    # skips that check and changes no text (leading blank lines are tidied away).
    soup = BeautifulSoup("\n" + html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    text = _tidy("".join(_page_text(soup)))
    if not title:
        first = _ATX_HEADING.search(text)
        title = atx_heading_text(first.group(1)) if first else None
    return title or None, text


def _page_text(root: Any) -> Iterator[str]:
    """The shown text of a parsed page in reading order: headings as '#' lines, blocks on lines of their own.

    One walk with an explicit stack, the tree left as parsed: bs4's insert_before/insert_after cost
    grows with the depth and width of the tree, so editing it took minutes on a page of 100,000 nested
    <div>s or paragraphs, and recursion would overflow on deep nesting.
    """
    from bs4 import Tag

    stack: list[Any] = [root]  # elements still to visit, and the plain "\n" that closes a block
    while stack:
        node = stack.pop()
        if type(node) is str:
            yield node
        elif isinstance(node, Tag):
            if node.name in _INVISIBLE_TAGS:
                continue
            if node.name in _HEADING_TAGS:
                heading = " ".join(s for s in (s.strip() for s in _shown_strings(node)) if s)
                yield f"\n\n{'#' * int(node.name[1])} {heading}\n\n"
                continue
            if node.name in _BLOCK_TAGS:
                yield "\n"
                stack.append("\n")
            stack.extend(reversed(node.contents))
        elif _is_shown_string(node):
            yield str(node)


def _shown_strings(tag: Any) -> Iterator[str]:
    """The shown strings under a tag, in order, without recursion."""
    from bs4 import Tag

    stack: list[Any] = list(reversed(tag.contents))
    while stack:
        node = stack.pop()
        if isinstance(node, Tag):
            if node.name not in _INVISIBLE_TAGS:
                stack.extend(reversed(node.contents))
        elif _is_shown_string(node):
            yield str(node)


def _is_shown_string(node: Any) -> bool:
    """Text and CDATA; not comments, doctypes, processing instructions or the strings of script/style."""
    from bs4 import CData, NavigableString

    return type(node) in (NavigableString, CData)


def markdown_title(text: str) -> str | None:
    """The first level-one ATX heading of a markdown document."""
    match = _ATX_HEADING.search(text)
    return atx_heading_text(match.group(1)).strip() if match else None


def atx_heading_text(rest: str) -> str:
    """The text of an ATX heading from what follows its '#'s and spaces: the closing '#'s and spaces cut."""
    kept = rest.rstrip().rstrip("#").rstrip()
    return rest[: max(len(kept), 1)]


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
