"""Reading article files (.txt, .md, .jsonl) into Articles with exact paragraph offsets."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..safe_yaml import YamlRefused, YamlTooLong, load_yaml

SUFFIXES = (".txt", ".md", ".jsonl")
METADATA_KEYS = ("url", "source", "published", "language")
MAX_FILE_BYTES = 20 * 1024 * 1024  # corpus.max_file_mb's default
# A file changed this soon before a load may keep its modification time through a later
# change (coarse file system clocks): it is read again instead of taken as unchanged.
RACY_NS = 2_000_000_000
# Front matter is a few lines of metadata; a longer block is not front matter worth reading.
MAX_FRONT_MATTER_CHARS = 64_000

# Page furniture: never answer text.
READ_ALSO = re.compile(
    r"^[ \t]*(?:baca juga|lihat juga|simak juga|read also|see also)[ \t]*[:\-–—]", re.IGNORECASE
)
EDITOR_TAG = re.compile(r"\s*\[[a-z]{1,5}(?:/[a-z]{1,5})+\]\s*$", re.IGNORECASE)
PHOTO_CREDIT = re.compile(
    r"\s*\((?:foto|photo|gambar|image|ilustrasi|sumber foto)\s*:(?:[^()]|\([^()]*\))*\)"
    r"\s*\.?\s*$",
    re.IGNORECASE,
)
LINE = re.compile(r"[^\n]*(?:\n|$)")
# Characters a terminal acts on instead of showing: C0 controls but newline and tab (ESC
# starts escape sequences, CR overwrites a line), DEL, C1 controls (CSI, OSC) and the bidi
# controls that reorder what is shown.
UNSHOWABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
BLANK_LINES = re.compile(r"\n[ \t\r]*\n")


@dataclass(frozen=True)
class Paragraph:
    """A span of answer text inside an article: 1-based number, [start, end) offsets, kind."""

    number: int
    start: int
    end: int
    kind: str = "body"  # "body" or "caption"


@dataclass(frozen=True)
class Article:
    """One article: its exact source text and where the answerable paragraphs lie in it."""

    doc_id: str
    title: str
    text: str
    paragraphs: tuple[Paragraph, ...]
    path: str
    url: str | None = None
    source: str | None = None
    published: str | None = None
    language: str | None = None

    def paragraph_text(self, paragraph: Paragraph) -> str:
        """The exact source text of one paragraph."""
        return self.text[paragraph.start : paragraph.end]

    @property
    def content_hash(self) -> str:
        """Changes whenever anything that is indexed or shown changes."""
        meta = [self.title, self.url, self.source, self.published, self.language]
        digest = hashlib.sha256(json.dumps([self.text, meta]).encode("utf-8"))
        return digest.hexdigest()[:32]


@dataclass(frozen=True)
class CorpusProblem:
    """A file (or JSONL line) that was skipped, and why.

    `unreadable` marks a file or folder that could not be read this time (permissions, an
    I/O error): a reindex keeps the articles it last indexed from there.
    """

    path: str
    reason: str
    unreadable: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Corpus:
    """What loading a corpus gave: the articles and the files it had to skip.

    With `known` files (see load_corpus), `unchanged` are the articles of files that were not
    read because they had not changed (doc_id -> content hash), and `files` is what to pass as
    `known` next time.
    """

    articles: tuple[Article, ...]
    problems: tuple[CorpusProblem, ...]
    unchanged: dict[str, str] = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    @functools.cached_property
    def hashes(self) -> dict[str, str]:
        """Every article's content hash, read or unchanged (computed once: an archive has a
        hundred thousand)."""
        return {**self.unchanged, **{a.doc_id: a.content_hash for a in self.articles}}


class _Skip(ValueError):
    """Raised while parsing one file or line: skip it, with this reason."""

    def __init__(self, reason: str, unreadable: bool = False):
        super().__init__(reason)
        self.unreadable = unreadable


def terminal_safe(text: str) -> str:
    """Article text (or a file name) for a terminal: each character a terminal would act on
    is replaced, one for one, by U+FFFD, so offsets into the text stay valid."""
    return UNSHOWABLE.sub("\ufffd", text)


def split_paragraphs(text: str, start: int = 0) -> list[tuple[int, int]]:
    """Spans of the blank-line-separated blocks of text[start:], whitespace trimmed."""
    spans, pos = [], start
    for sep in [*BLANK_LINES.finditer(text, start), None]:
        end = sep.start() if sep else len(text)
        block = text[pos:end]
        stripped = block.strip()
        if stripped:
            lead = len(block) - len(block.lstrip())
            spans.append((pos + lead, pos + lead + len(stripped)))
        if sep:
            pos = sep.end()
    return spans


def _without_read_also(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The parts of a block between read-also lines (which may sit inside a block)."""
    parts, run_start = [], start
    for line in LINE.finditer(text, start, end):
        if not line.group():
            break
        if READ_ALSO.match(line.group()):
            parts.append((run_start, line.start()))
            run_start = line.end()
    parts.append((run_start, end))
    return parts


def _clean_paragraphs(text: str, spans: list[tuple[int, int]]) -> tuple[Paragraph, ...]:
    """Drop furniture and trim trailing tags and credits; mark photo captions."""
    paragraphs: list[Paragraph] = []
    for block_start, block_end in spans:
        for start, end in _without_read_also(text, block_start, block_end):
            block, kind = text[start:end], "body"
            while True:  # a tag may follow a credit or the other way round
                tag = EDITOR_TAG.search(block) or PHOTO_CREDIT.search(block)
                if not tag:
                    break
                if tag.re is PHOTO_CREDIT:
                    kind = "caption"
                block = block[: tag.start()]
            stripped = block.strip()
            if not stripped:
                continue
            lead = len(block) - len(block.lstrip())
            paragraphs.append(
                Paragraph(len(paragraphs) + 1, start + lead, start + lead + len(stripped), kind)
            )
    return tuple(paragraphs)


def _front_matter(text: str) -> tuple[dict, int]:
    """YAML front matter between leading '---' lines, and where the body starts."""
    lines = list(LINE.finditer(text))
    first = next((m for m in lines if m.group().strip()), None)
    if first is None or first.group().strip() != "---":
        return {}, 0
    closing = next(
        (m for m in lines if m.start() > first.start() and m.group().strip() == "---"), None
    )
    if closing is None:
        raise _Skip("front matter has no closing '---' line")
    block = text[first.end() : closing.start()]
    try:
        meta = load_yaml(block, MAX_FRONT_MATTER_CHARS) or {}
    except YamlTooLong as exc:
        raise _Skip(f"front matter is longer than {MAX_FRONT_MATTER_CHARS:,} characters") from exc
    except YamlRefused as exc:
        raise _Skip(f"front matter refused: {exc}") from exc
    except yaml.YAMLError as exc:
        raise _Skip(f"front matter is not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(meta, dict):
        raise _Skip("front matter must be a mapping of keys to values")
    # Keys other than these (author, tags, ...) are allowed and not used.
    wanted = (*METADATA_KEYS, "title")
    return {k: str(meta[k]) for k in wanted if meta.get(k) is not None}, closing.end()


def parse_text(text: str, doc_id: str, path: str, markdown: bool = False) -> Article:
    """Parse a .txt or .md article: optional front matter, title line, paragraphs."""
    meta, body_start = _front_matter(text)
    spans = split_paragraphs(text, body_start)
    if not spans:
        raise _Skip("no text")
    title_start, title_end = spans[0]
    first_line_end = text.find("\n", title_start, title_end)
    if first_line_end != -1:
        # The title is only the first line; the rest of its block is a paragraph.
        rest = text[first_line_end:title_end]
        lead = len(rest) - len(rest.lstrip())
        spans[0] = (first_line_end + lead, title_end)
        title_end = first_line_end
    else:
        spans = spans[1:]
    title = text[title_start:title_end].strip()
    if markdown:
        title = title.lstrip("#").strip()
    title = meta.pop("title", None) or title
    paragraphs = _clean_paragraphs(text, spans)
    if not paragraphs:
        raise _Skip("no paragraphs after the title")
    return Article(doc_id, title, text, paragraphs, path, **meta)


def _parse_json_line(line: str, path: str) -> Article:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _Skip(f"not valid JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise _Skip("JSON nested too deeply") from exc
    if not isinstance(record, dict):
        raise _Skip("expected a JSON object")
    for key in ("id", "text"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise _Skip(f"missing or empty {key!r}")
    text = record["text"]
    paragraphs = _clean_paragraphs(text, split_paragraphs(text))
    if not paragraphs:
        raise _Skip("no paragraphs in 'text'")
    meta = {k: str(record[k]) for k in METADATA_KEYS if record.get(k) is not None}
    title = record.get("title") or ""
    return Article(record["id"], str(title), text, paragraphs, path, **meta)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.3g} MB"


def _read(path: Path, max_bytes: int) -> str:
    try:
        # Checked before opening: opening a named pipe would wait for a writer.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _Skip("not a regular file")
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())
            if info.st_size > max_bytes:
                raise _Skip(
                    f"{_megabytes(info.st_size)} is over corpus.max_file_mb "
                    f"({_megabytes(max_bytes)})"
                )
            data = file.read(max_bytes + 1)
    except FileNotFoundError as exc:  # a dangling link, or removed while reading
        raise _Skip(f"cannot read ({exc.strerror or exc})") from exc
    except OSError as exc:
        raise _Skip(f"cannot read ({exc.strerror or exc})", unreadable=True) from exc
    if len(data) > max_bytes:  # grew while being read
        raise _Skip(f"over corpus.max_file_mb ({_megabytes(max_bytes)})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Skip(f"not UTF-8 text (byte {exc.start})") from exc
    # Read as text mode would: universal newlines.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_file(
    path: Path, doc_id: str, max_bytes: int = MAX_FILE_BYTES
) -> tuple[list[tuple[Article, str]], list[CorpusProblem]]:
    """Articles from one file, each with where it came from (path, or path:line for JSONL)."""
    try:
        text = _read(path, max_bytes)
        if path.suffix == ".jsonl":
            articles, problems = [], []
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    articles.append((_parse_json_line(line, str(path)), f"{path}:{number}"))
                except _Skip as skip:
                    problems.append(CorpusProblem(f"{path}:{number}", str(skip)))
            return articles, problems
        article = parse_text(text, doc_id, str(path), markdown=path.suffix == ".md")
        return [(article, str(path))], []
    except _Skip as skip:
        return [], [CorpusProblem(str(path), str(skip), skip.unreadable)]


def inside(path: str, folder: str) -> bool:
    """Whether a path is the folder or lies under it (both absolute, as given)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def corpus_files(
    root: Path, follow_outside_links: bool = False
) -> tuple[list[str], list[CorpusProblem]]:
    """Article files under a folder (hidden ones skipped), or the one file given, and the
    folders and links that were not followed, each with its reason.

    A link to a folder inside the folder is not followed: that folder is read where it is,
    so an article's id never depends on which of two paths to it comes first. Links (to
    files or folders) that lead outside the folder are followed only with
    follow_outside_links; a folder that cannot be listed is reported, not passed over.
    Paths are strings (an archive has a hundred thousand of them), in path order.
    """
    if not root.is_dir():
        return [str(root)], []
    real_root = os.path.realpath(root)
    files: list[str] = []
    problems: list[CorpusProblem] = []

    def outside(path: str, link: bool) -> bool:
        if follow_outside_links or not link:
            return False
        if inside(os.path.realpath(path), real_root):
            return False
        reason = "a link to outside the corpus folder (see corpus.follow_outside_links)"
        problems.append(CorpusProblem(path, reason))
        return True

    seen_folders = {real_root}
    # Files and folders of each folder in name order, a folder's files read where it comes:
    # the files come out in path order, with no sort of a hundred thousand paths at the end.
    stack: list[tuple[str, bool]] = [(str(root), True)]
    while stack:
        folder, is_folder = stack.pop()
        if not is_folder:
            files.append(folder)
            continue
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as error:
            reason = f"cannot list this folder ({error.strerror or error})"
            problems.append(CorpusProblem(error.filename or folder, reason, unreadable=True))
            continue
        found = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden
            try:
                is_folder = entry.is_dir()  # through a link too
            except OSError:
                is_folder = False
            if is_folder:
                real = os.path.realpath(entry.path)
                if real in seen_folders:
                    continue  # a link back to a folder already read
                if entry.is_symlink() and inside(real, real_root):
                    continue  # read where it is
                if outside(entry.path, entry.is_symlink()):
                    continue
                seen_folders.add(real)
                found.append((entry.path, True))
            elif entry.name.endswith(SUFFIXES) and not (
                entry.is_symlink() and outside(entry.path, True)
            ):
                found.append((entry.path, False))  # a dangling link is reported when read
        stack.extend(reversed(found))
    return files, problems


def _one_unchanged(was, info: os.stat_result | None, settled: int) -> bool:
    """Whether a file's record is of one article read from the file itself ([size, time,
    [[doc_id, hash]]]), and its size and time are as recorded, before `settled`."""
    if info is None or type(was) is not list or len(was) != 3:
        return False
    size, mtime, listed = was
    if mtime != info.st_mtime_ns or size != info.st_size or mtime >= settled:
        return False
    if type(listed) is not list or len(listed) != 1:
        return False
    item = listed[0]
    return type(item) is list and len(item) == 2 and type(item[0]) is str and type(item[1]) is str


def _unchanged(was, name: str, info: os.stat_result) -> list | None:
    """A file's recorded articles ([doc_id, hash, where] each) when its size and time are as
    recorded; None when they are not, or the record is not what load_corpus writes."""
    try:
        size, mtime, listed = was
        if size != info.st_size or mtime != info.st_mtime_ns:
            return None
        found = []
        for item in listed:  # (plain loops: this runs for every file of an archive)
            key, digest, where = item if len(item) == 3 else (*item, name)
            if type(key) is not str or type(digest) is not str or type(where) is not str:
                return None
            found.append((key, digest, where))
    except (TypeError, ValueError):
        return None
    return found


def load_corpus(
    root: str | Path,
    max_file_bytes: int = MAX_FILE_BYTES,
    follow_outside_links: bool = False,
    known: dict | None = None,
) -> Corpus:
    """Load every article under root; skip and report files that cannot be read.

    `known` is the `files` of an earlier load: a file whose size and modification time are
    as they were then is not read again; its articles count as unchanged. (A file changed in
    the same second as that load, which its time may not show, is read again.)
    """
    root = Path(root)
    if not root.exists():
        return Corpus((), (CorpusProblem(str(root), "no such file or folder"),))
    articles: dict[str, Article] = {}
    unchanged: dict[str, str] = {}
    first_seen: dict[str, str] = {}
    files: dict[str, dict] = {}
    started = time.time_ns()
    known_files = (known or {}).get("files", {})
    settled = (known or {}).get("loaded_ns", 0) - RACY_NS
    base = root if root.is_dir() else root.parent
    prefix = str(base) + os.sep
    names, problems = corpus_files(root, follow_outside_links)
    for name in names:
        try:
            info = os.stat(name)
        except OSError:
            info = None
        was = known_files.get(name)
        if _one_unchanged(was, info, settled) and was[2][0][0] not in first_seen:
            # The common case, one article as recorded (an archive's hundred thousand files).
            key, digest = was[2][0]
            first_seen[key], unchanged[key], files[name] = name, digest, was
            continue
        found = None
        if info is not None and was is not None and info.st_mtime_ns < settled:
            found = _unchanged(was, name, info)
        before = len(problems)
        if found is None:
            if name.startswith(prefix):  # string work: pathlib costs seconds on an archive
                relative = name[len(prefix) :]
            else:
                relative = Path(name).relative_to(base).as_posix()
            doc_id = os.path.splitext(relative)[0].replace(os.sep, "/")
            loaded, skipped = load_file(Path(name), doc_id, max_file_bytes)
            problems.extend(skipped)
            found = [(a, a.content_hash, where) for a, where in loaded]
        listed = []
        for item, digest, where in found:
            key = item if isinstance(item, str) else item.doc_id
            if key in first_seen:
                other = first_seen[key]
                reason = f"duplicate id {key!r}; the article at {other} is kept"
                problems.append(CorpusProblem(where, reason))
                continue
            first_seen[key] = where
            listed.append([key, digest] if where == name else [key, digest, where])
            if isinstance(item, str):
                unchanged[key] = digest
            else:
                articles[key] = item
        # A file with a problem is read again next time, so the problem is reported again.
        if info is not None and len(problems) == before:
            files[name] = [info.st_size, info.st_mtime_ns, listed]
    return Corpus(
        tuple(articles.values()),
        tuple(problems),
        unchanged,
        {"loaded_ns": started, "files": files},
    )
