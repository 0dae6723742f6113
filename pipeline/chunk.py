"""Chunking: documents into token-bounded, heading-aware passages with stable ids and content hashes.

A document is cut into sections at its headings (markdown ``#`` lines, which is also what HTML
becomes on ingest, or underlined reStructuredText titles). Each section's paragraphs are packed
into chunks of at most ``max_tokens`` tokens of the encoder's own tokenizer; a paragraph too long
for one chunk is split into sentences, and a sentence too long into token windows. Consecutive
chunks of a section share up to ``overlap_tokens`` tokens of whole pieces.

A chunk's id is stable for a given document and position; its content hash covers exactly the
text that will be embedded (title and heading included), so the index re-embeds a chunk only when
that text changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.text import atx_heading_text, is_rst_underline, rst_underlined

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+)$")  # greedy: see pipeline.text._ATX_HEADING
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer the chunker uses."""

    def __call__(self, text: Any, **kwargs: Any) -> Any: ...


class ChunkOptions(BaseModel):
    """How large chunks are and how much consecutive chunks overlap, in encoder tokens."""

    model_config = ConfigDict(frozen=True)

    max_tokens: int = Field(200, ge=8)
    overlap_tokens: int = Field(32, ge=0)

    @model_validator(mode="after")
    def _overlap_smaller(self) -> ChunkOptions:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("chunk overlap_tokens must be smaller than max_tokens")
        return self


@dataclass(frozen=True)
class Section:
    heading: str | None
    text: str


@dataclass(frozen=True)
class Chunk:
    """One passage of a document, ready to embed."""

    chunk_id: str
    source: str
    doc_id: str
    doc_version: int
    ordinal: int
    title: str | None
    heading: str | None
    text: str
    n_tokens: int
    content_hash: str

    @property
    def embedding_text(self) -> str:
        """What the encoder sees: the passage under its title and heading."""
        return embedding_text(self.title, self.heading, self.text)


def load_tokenizer(model_path: Path | str) -> Tokenizer:
    """The tokenizer of a local model directory (never fetched from a hub)."""
    from transformers import AutoTokenizer

    tokenizer: Tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    return tokenizer


def chunk_document(
    source: str,
    doc_id: str,
    doc_version: int,
    title: str | None,
    text: str,
    text_format: str | None,
    tokenizer: Tokenizer,
    options: ChunkOptions,
) -> list[Chunk]:
    """Cut one document into chunks, in reading order."""
    passages: list[tuple[str | None, str]] = []
    for section in split_sections(text, text_format):
        passages += [(section.heading, body) for body in pack(paragraphs(section.text), tokenizer, options)]
    counts = count_tokens(tokenizer, [body for _, body in passages])
    return [
        Chunk(
            chunk_id=chunk_id(source, doc_id, ordinal),
            source=source,
            doc_id=doc_id,
            doc_version=doc_version,
            ordinal=ordinal,
            title=title,
            heading=heading,
            text=body,
            n_tokens=n,
            content_hash=hashlib.sha256(embedding_text(title, heading, body).encode("utf-8")).hexdigest(),
        )
        for ordinal, ((heading, body), n) in enumerate(zip(passages, counts, strict=True))
    ]


def chunk_id(source: str, doc_id: str, ordinal: int) -> str:
    """A stable id for the ordinal-th chunk of a document."""
    return hashlib.sha1(f"{source}\x1f{doc_id}\x1f{ordinal}".encode()).hexdigest()[:24]


def embedding_text(title: str | None, heading: str | None, text: str) -> str:
    """The passage under its context line ("title > heading"), as it is embedded."""
    context = " > ".join(dict.fromkeys(part for part in (title, heading) if part))
    return f"{context}\n\n{text}" if context else text


def split_sections(text: str, text_format: str | None) -> list[Section]:
    """The document's sections, each under its nearest heading; heading lines are not body text."""
    lines = text.splitlines()
    sections: list[Section] = []
    heading: str | None = None
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        found = _heading_at(lines, i, text_format)
        if found is None:
            body.append(line)
            i += 1
            continue
        title, consumed = found
        if "\n".join(body).strip():
            sections.append(Section(heading, "\n".join(body).strip()))
        heading, body = title, []
        i += consumed
    if "\n".join(body).strip():
        sections.append(Section(heading, "\n".join(body).strip()))
    return sections


def _heading_at(lines: Sequence[str], i: int, text_format: str | None) -> tuple[str, int] | None:
    """(heading, lines it spans) if a heading starts at line i."""
    line = lines[i]
    if text_format == "rst":
        below = lines[i + 1] if i + 1 < len(lines) else ""
        if title := rst_underlined(line, below):
            return title, 2
        if is_rst_underline(line) and i + 2 < len(lines) and is_rst_underline(lines[i + 2]):
            return lines[i + 1].strip(), 3  # an overlined title
        return None
    if text_format == "txt":
        return None
    match = _MD_HEADING.match(line)
    return (atx_heading_text(match.group(2)), 1) if match else None


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, whitespace inside each kept as written."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def pack(pieces: list[str], tokenizer: Tokenizer, options: ChunkOptions) -> list[str]:
    """Greedily pack pieces into passages of at most max_tokens, sharing up to overlap_tokens."""
    units = _fit(pieces, tokenizer, options.max_tokens)
    sizes = count_tokens(tokenizer, units)
    passages: list[str] = []
    current: list[int] = []  # indices into units
    for index, size in enumerate(sizes):
        if current and sum(sizes[j] for j in current) + size > options.max_tokens:
            passages.append("\n\n".join(units[j] for j in current))
            current = _tail(current, sizes, min(options.overlap_tokens, options.max_tokens - size))
        current.append(index)
    if current:
        passages.append("\n\n".join(units[j] for j in current))
    return passages


def _tail(indices: list[int], sizes: list[int], budget: int) -> list[int]:
    """The last pieces of a passage that fit in the overlap budget."""
    kept: list[int] = []
    for j in reversed(indices):
        if sum(sizes[k] for k in kept) + sizes[j] > budget:
            break
        kept.insert(0, j)
    return kept


def _fit(pieces: list[str], tokenizer: Tokenizer, max_tokens: int) -> list[str]:
    """Split every piece longer than max_tokens: into sentences, then into token windows."""
    units: list[str] = []
    for piece, size in zip(pieces, count_tokens(tokenizer, pieces), strict=True):
        if size <= max_tokens:
            units.append(piece)
            continue
        for sentence in _SENTENCE_END.split(piece):
            if count_tokens(tokenizer, [sentence])[0] <= max_tokens:
                units.append(sentence)
            else:
                units += _windows(sentence, tokenizer, max_tokens)
    return units


def _windows(text: str, tokenizer: Tokenizer, max_tokens: int) -> list[str]:
    """Consecutive slices of text of at most max_tokens tokens each, cut between tokens.

    Never between two tokens of one character (the normaliser splits a Hangul syllable into its
    letters, each a token spanning the whole syllable): that character would be in both slices.
    """
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    slices = []
    first = 0
    while first < len(offsets):
        end = min(first + max_tokens, len(offsets))  # one past the window's last token
        while first + 1 < end < len(offsets) and offsets[end][0] < offsets[end - 1][1]:
            end -= 1
        slices.append(text[offsets[first][0] : offsets[end - 1][1]].strip())
        first = end
    return [s for s in slices if s]


def count_tokens(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    """How many encoder tokens each text has (no special tokens)."""
    if not texts:
        return []
    # verbose=False: counting a paragraph longer than the model's window is fine; it is split next.
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [len(ids) for ids in encoded]
