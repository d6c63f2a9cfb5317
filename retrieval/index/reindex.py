"""Rebuild the index incrementally beside the live one and swap it in with one rename.

Layout: the configured index path (say `.index`) is a symbolic link to a complete build
in `.index.builds/<build id>`. A build is written in full, then a new link is renamed over
the old one, so a reader sees either the old build or the new one, never a partial one.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, load_config
from ..corpus.articles import Corpus, CorpusProblem, inside, load_corpus, terminal_safe
from ..errors import (
    IndexCorruptError,
    IndexMismatchError,
    IndexMissingError,
    ReindexLockedError,
    TanyaError,
)
from ..models.embedding import Embedder, make_embedder
from .folder import (
    CORPUS_FILES,
    ArticleInfo,
    BuildStats,
    EncoderFailed,
    IndexData,
    build_index,
    check_manifest,
    document_hashes,
    expected_settings,
    faiss_settings,
    load_index,
    new_build_id,
    read_manifest,
    verify_files,
)

log = logging.getLogger("tanya.reindex")


def builds_dir(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + ".builds")


@contextmanager
def reindex_lock(index_path: Path):
    """Hold the reindex lock for this index; the kernel drops it if the process dies."""
    lock_path = index_path.with_name(index_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ReindexLockedError(
                f"another reindex of {index_path} is running ({holder}); "
                "wait for it to finish, then run this again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


def swap_in(index_path: Path, build: Path) -> None:
    """Point the live index link at a complete build, atomically."""
    tmp_link = index_path.with_name(f"{index_path.name}.link-{os.getpid()}")
    if tmp_link.is_symlink():
        tmp_link.unlink()
    os.symlink(os.path.relpath(build, index_path.parent), tmp_link)
    os.replace(tmp_link, index_path)
    _fsync_dir(index_path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune_builds(index_path: Path, keep: int = 2) -> None:
    """Remove unfinished and old builds, keeping the live one and the one before it."""
    folder = builds_dir(index_path)
    if not folder.is_dir():
        return
    live = Path(os.path.realpath(index_path)) if index_path.is_symlink() else None
    builds = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    kept = 0
    for build in builds:
        complete = (build / "manifest.json").exists()
        if build.resolve() == live or (complete and kept < keep - 1):
            kept += build.resolve() != live
            continue
        shutil.rmtree(build, ignore_errors=True)
    for link in index_path.parent.glob(f"{index_path.name}.link-*"):
        link.unlink(missing_ok=True)


def read_corpus(config: Config, known: dict | None = None) -> Corpus:
    """The configured corpus, read with the configured limits; files as `known` lists them
    are not read again (see load_corpus)."""
    return load_corpus(
        config.corpus_path,
        max_file_bytes=int(config.corpus.max_file_mb * 1024 * 1024),
        follow_outside_links=config.corpus.follow_outside_links,
        known=known,
    )


def known_files(index_path: Path) -> dict | None:
    """The corpus files the live build was made from, with their sizes and times; None when
    there is no such record (or it cannot be read: then every file is read)."""
    try:
        data = json.loads((Path(os.path.realpath(index_path)) / CORPUS_FILES).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not isinstance(data.get("loaded_ns"), int):
        return None
    return data


def save_known_files(index_path: Path, files: dict) -> None:
    """Replace the live build's record of corpus files (a record to save reading, not part of
    the index: it is not in the manifest's checksums), so files read again this time are not
    read again next time."""
    target = Path(os.path.realpath(index_path)) / CORPUS_FILES
    tmp = target.with_name(f"{CORPUS_FILES}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(files, ensure_ascii=False), "utf-8")
        os.replace(tmp, target)
    except OSError as exc:  # a full disk, say: only costs reading those files next time
        tmp.unlink(missing_ok=True)
        log.warning("could not update %s (%s)", target, exc.strerror or exc)


def unreadable_articles(corpus: Corpus, index: IndexData | None) -> list[ArticleInfo]:
    """Articles of the index from files or folders that could not be read this time."""
    if index is None:
        return []
    places = [p for p in corpus.problems if p.unreadable]
    if not places:
        return []
    read = corpus.hashes.keys()
    return [
        info
        for doc_id, info in index.articles.items()
        if doc_id not in read and any(_comes_from(info, place) for place in places)
    ]


def _comes_from(info: ArticleInfo, place: CorpusProblem) -> bool:
    """Whether an indexed article was read from this file or from under this folder."""
    return inside(os.path.abspath(info.path), os.path.abspath(place.path))


def stale_documents(config: Config, index: IndexData) -> list[str]:
    """Ids of articles added, changed or removed in the corpus since the index was built."""
    corpus = read_corpus(config, known_files(index.path) if index.path else None)
    # An article not read this time is not known to differ: it counts as its indexed version.
    current = document_hashes(corpus.hashes, index, unreadable_articles(corpus, index))
    indexed = index.manifest.get("documents", {})
    return sorted(k for k in current.keys() | indexed.keys() if current.get(k) != indexed.get(k))


@dataclass(frozen=True)
class ReindexResult:
    """What a reindex did: the build's stats, skipped files, whether it swapped, and the
    articles it kept as last indexed because their files could not be read."""

    stats: BuildStats
    problems: tuple[CorpusProblem, ...]
    swapped: bool
    path: Path
    kept: tuple[ArticleInfo, ...] = ()

    def kept_from(self, problem: CorpusProblem) -> tuple[ArticleInfo, ...]:
        """The kept articles that were read from this problem's file or folder."""
        if not problem.unreadable:
            return ()
        return tuple(info for info in self.kept if _comes_from(info, problem))


def _usable_manifest(index_path: Path, config: Config) -> dict | None:
    """The live build's manifest when it serves this config and its files look as written
    (sizes and times; see verify_files); None otherwise. Only then are corpus files the build
    recorded left unread."""
    try:
        real = Path(os.path.realpath(index_path))
        manifest = read_manifest(real)
        check_manifest(manifest, config)
        verify_files(real, manifest, "")
    except TanyaError:
        return None
    return manifest


def _up_to_date(manifest: dict, documents: dict, config: Config) -> bool:
    """Whether a build with this manifest holds these documents as the config would build
    them (the same keyword setting, and each segment's FAISS kind what it would get)."""
    return (
        manifest["documents"] == documents
        and all(
            entry.get("faiss") == faiss_settings(config.index, entry["count"])
            for entry in manifest["segments"]
        )
        and manifest.get("keyword") == expected_settings(config)["keyword"]
    )


def _unchanged(
    index_path: Path, corpus: Corpus, chunks: int, started: float, kept: tuple = ()
) -> ReindexResult:
    """The result of a reindex that found nothing to do."""
    if corpus.articles:  # files read again (new times, or changed just before)
        save_known_files(index_path, corpus.files)
    seconds = time.perf_counter() - started
    stats = BuildStats(0, 0, 0, len(corpus.hashes) + len(kept), chunks, 0, seconds)
    return ReindexResult(stats, corpus.problems, False, index_path, kept)


def _previous(
    index_path: Path, config: Config, full: bool, verify: bool, manifest: dict | None = None
) -> IndexData | None:
    """The live build, opened to reuse (None when there is none to reuse); `manifest`: its
    manifest, already read and checked against the config."""
    if full:
        return None
    try:
        return load_index(index_path, config, thorough=verify, search=False, manifest=manifest)
    except IndexMissingError:
        return None
    except IndexMismatchError as exc:
        try:
            # Keyword settings only shape BM25, which every build makes anew: keep the vectors.
            previous = load_index(
                index_path, config, ignore=("keyword",), thorough=verify, search=False
            )
        except (IndexMismatchError, IndexCorruptError):
            log.warning("rebuilding everything: %s", " ".join(str(exc).splitlines()[:2]))
            return None
        log.info("keyword settings changed: rebuilding BM25, keeping the vectors")
        return previous
    except IndexCorruptError as exc:
        log.warning("rebuilding everything: %s", str(exc).splitlines()[0])
        return None


def reindex(
    config: Config,
    full: bool = False,
    embedder: Embedder | None = None,
    progress_factory=None,
    locked: bool = False,
    verify: bool = False,
) -> ReindexResult:
    """Bring the index up to date with the corpus; unchanged articles are not re-embedded.

    locked=True: the caller already holds reindex_lock for this index (tanya-add does).
    verify=True: hash every file of the live index, the large segment files included.
    """
    started = time.perf_counter()
    index_path = config.index_path
    with nullcontext() if locked else reindex_lock(index_path):
        if config.index.backend == "milvus":
            return _reindex_milvus(config, full, embedder, progress_factory, started)
        if index_path.exists() and not index_path.is_symlink():
            raise IndexCorruptError(
                f"{index_path} is a plain folder, not a link to a build; "
                "move it away and run this again"
            )
        prune_builds(index_path)
        live = None if full else _usable_manifest(index_path, config)
        # Files unchanged since the live build are not read again (not for --full).
        corpus = read_corpus(config, known_files(index_path) if live else None)
        # Opened whether or not anything changed: every file's header is checked, so a
        # damaged build is rebuilt, not declared up to date (FAISS is opened only to search).
        previous = _previous(index_path, config, full, verify, live)
        if corpus.unchanged and not _holds(previous, corpus.unchanged):
            # Those files' articles were to come from the live build, which cannot give them.
            log.warning("reading every corpus file again, as the index cannot be reused")
            corpus = read_corpus(config)
        # An article whose file cannot be read this time keeps its last indexed version.
        kept = unreadable_articles(corpus, previous)
        documents = document_hashes(corpus.hashes, previous, kept)
        if previous is not None and _up_to_date(previous.manifest, documents, config):
            return _unchanged(index_path, corpus, previous.count, started, tuple(kept))
        _check_readable(config, corpus)
        embedder = embedder or make_embedder(config.embedding)
        previous_documents = _replaced_documents(index_path) if full else None

        build = builds_dir(index_path) / new_build_id()
        try:
            built, stats = build_index(
                build,
                corpus.articles,
                embedder,
                config,
                previous,
                progress_factory,
                documents,
                corpus.files,
            )
            read_manifest(build)  # the build must load before it goes live
            _check_complete(built, documents, build, config)
            swap_in(index_path, build)
        except EncoderFailed as exc:
            _discard(build, index_path)
            raise exc.__cause__ from None  # the encoder's own error, as before anything is written
        except (OSError, RuntimeError) as exc:  # FAISS reports a failed write as RuntimeError
            if not build.exists():  # failed before writing anything
                raise
            # A full disk, say: the partial build goes, the live index stays as it was.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if os.path.realpath(index_path) == os.path.realpath(build):
                raise TanyaError(
                    f"the new index is live, but its folder could not be synced ({reason})"
                ) from exc
            _discard(build, index_path)
            raise TanyaError(
                f"cannot write the new index in {build.parent} ({reason}); the partial build "
                "was removed and the index was left as it was. Free some space and run this again"
            ) from exc
        except BaseException:
            # Stopped while writing (the encoder failed, Ctrl-C): the partial build goes too.
            if os.path.realpath(index_path) != os.path.realpath(build):
                _discard(build, index_path)
            raise
        if full:
            stats = _full_build_stats(documents, previous_documents, stats)
        prune_builds(index_path)
        return ReindexResult(stats, corpus.problems, True, index_path, tuple(kept))


def _holds(previous: IndexData | None, unchanged: dict[str, str]) -> bool:
    """Whether the previous build holds these articles (of files not read again) as they are."""
    if previous is None:
        return False
    documents = previous.manifest["documents"]
    return all(documents.get(doc_id) == digest for doc_id, digest in unchanged.items())


def _check_complete(built: IndexData, documents: dict, build: Path, config: Config) -> None:
    """TanyaError, the new build removed, unless it holds as many articles as the corpus
    (counted per segment as written, so an archive's articles are not all read again): a
    build that lost articles must never go live."""
    held = sum(entry["articles"] for entry in built.manifest["segments"])
    if held != len(documents):
        _discard(build, config.index_path)
        raise TanyaError(
            f"the new index would hold {held:,} of the corpus's {len(documents):,} articles, "
            "so it was not made live and the index was left as it was. "
            f"Rebuild it with: {config.reindex_command(full=True)}"
        )


def _check_readable(config: Config, corpus: Corpus) -> None:
    """Refuse to index nothing: an empty read is a problem to report, not a corpus to index."""
    if not corpus.hashes:
        reasons = "".join(f"\n  {p}" for p in corpus.problems[:10])
        raise TanyaError(
            f"no articles could be read from {config.corpus_path}; "
            f"the index was left as it was{reasons}"
        )


def _reindex_milvus(
    config: Config, full: bool, embedder: Embedder | None, progress_factory, started: float
) -> ReindexResult:
    """The reindex against a Milvus collection (milvus.py): the same corpus, content hashes and
    kept articles as the local index's, but a changed model is refused, not rebuilt."""
    from . import milvus

    corpus = read_corpus(config)
    previous = None if full else milvus.open_previous(config)
    kept = unreadable_articles(corpus, previous)
    documents = document_hashes(corpus.hashes, previous, kept)
    if previous is None or previous.manifest["documents"] != documents:
        _check_readable(config, corpus)
    stats = milvus.sync(
        config,
        corpus.articles,
        documents,
        lambda: embedder or make_embedder(config.embedding),
        full,
        progress_factory,
    )
    stats = dataclasses.replace(stats, seconds=time.perf_counter() - started)
    swapped = full or bool(stats.added or stats.changed or stats.removed)
    return ReindexResult(stats, corpus.problems, swapped, config.index_path, tuple(kept))


def _discard(build: Path, index_path: Path) -> None:
    """Remove a build that could not be finished, and the link that was to make it live."""
    for link in index_path.parent.glob(f"{index_path.name}.link-*"):
        link.unlink(missing_ok=True)
    shutil.rmtree(build, ignore_errors=True)


def _replaced_documents(index_path: Path) -> dict | None:
    """The documents of the index a full build replaces, when it is readable."""
    try:
        return read_manifest(Path(os.path.realpath(index_path)))["documents"]
    except TanyaError:
        return None


def _full_build_stats(documents: dict, old: dict | None, stats: BuildStats) -> BuildStats:
    """Added/changed/removed against the index a full build replaces."""
    if old is None:
        return stats
    added = sum(1 for d in documents if d not in old)
    changed = sum(1 for d, h in documents.items() if d in old and old[d] != h)
    removed = sum(1 for d in old if d not in documents)
    unchanged = len(documents) - added - changed
    return dataclasses.replace(
        stats, added=added, changed=changed, removed=removed, unchanged=unchanged
    )


class _LogProgress:
    """Plain log lines instead of a bar when output is not a terminal."""

    def __init__(self, total: int):
        self.total, self.done, self.last = total, 0, time.monotonic()
        log.info("embedding %d chunks", total)

    def update(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self.last > 5 or self.done >= self.total:
            log.info("embedded %d of %d chunks", self.done, self.total)
            self.last = time.monotonic()

    def close(self) -> None:
        pass


def progress_factory(enabled: bool):
    """A progress bar on a terminal, log lines elsewhere, or nothing."""
    if not enabled:
        return None
    if sys.stderr.isatty():
        from tqdm import tqdm

        return lambda total: tqdm(total=total, unit="chunk", desc="embedding", leave=False)
    return _LogProgress


def print_result(result: ReindexResult) -> None:
    """The reindex summary on stdout, each skipped file or folder on stderr."""
    for problem in result.problems:
        kept = "; its indexed articles are kept as they were" if result.kept_from(problem) else ""
        print(terminal_safe(f"skipped {problem}{kept}"), file=sys.stderr)
    s = result.stats
    state = "index updated" if result.swapped else "index already up to date"
    print(
        f"{state}: {s.added} added, {s.changed} changed, {s.removed} removed, "
        f"{s.unchanged} unchanged documents; {s.chunks} chunks ({s.embedded} embedded); "
        f"{len(result.problems)} files skipped; {s.seconds:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    """tanya-reindex: bring the index up to date with the corpus."""
    parser = argparse.ArgumentParser(prog="tanya-reindex", description=main.__doc__)
    parser.add_argument("--config", help="config file (default: config.yaml)")
    parser.add_argument("--full", action="store_true", help="rebuild everything")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="hash every file of the index, the large segment files too (a damaged one is rebuilt)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        config = load_config(args.config, os.environ)
        result = reindex(
            config,
            full=args.full,
            progress_factory=progress_factory(not args.quiet),
            verify=args.verify,
        )
    except TanyaError as exc:
        print(f"tanya-reindex: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ReindexLockedError) else 1
    except KeyboardInterrupt:
        print("tanya-reindex: interrupted; the index was left as it was", file=sys.stderr)
        return 130
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
