"""Hostile pages against tanya-add's fetching, measured: python -m tests.bench_web [--runs N].

Serves each case from the test site on 127.0.0.1 (sources.allow_private_networks on) and
prints medians over the runs: the peak RSS of a process fetching a double gzip or deflate
bomb, how long headers sent a byte at a time hold a request, the time to read a feed of
30,000 entries and to add pages of 40,000 and 80,000 paragraphs, with feedparser's and
trafilatura's own time measured apart (the floor under what tanya does itself).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import feedparser
import trafilatura

from retrieval.web.ingest import ingest
from tests.conftest import ROOT, make_config
from tests.fake_web import ARTICLE, FakeWeb, Response, big_feed, long_page, news_site, squeeze

BOMB_MIB = 1300  # the bomb inflated to 1.32 GB
FETCH_ONE = """
import resource, sys
sys.path.insert(0, {root!r})
from retrieval.config import SourcesConfig
from retrieval.web.fetch import Fetcher, Skip
config = SourcesConfig(delay_seconds=0, timeout_seconds=60, allow_private_networks=True)
with Fetcher(config) as fetcher:
    try:
        page = fetcher.get({url!r})
        said = f"{{len(page.body)}} bytes"
    except Skip as skip:
        said = f"skipped: {{skip.detail}}"
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, said)
"""


def fetch_in_a_child(url: str) -> tuple[int, str]:
    """Peak RSS (MB) of a new process that fetches url, and what it got."""
    script = FETCH_ONE.format(root=str(ROOT), url=url)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=True
    )
    rss, said = done.stdout.strip().split(" ", 1)
    return int(rss), said


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


@contextlib.contextmanager
def time_spent_in(module, name: str):
    """Time spent in module.name, by a wrapper that calls the real one."""
    real, spent = getattr(module, name), []

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    setattr(module, name, wrapper)
    try:
        yield spent
    finally:
        setattr(module, name, real)


def config_in(folder: Path, **sources):
    corpus = folder / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    values = {"delay_seconds": 0, "allow_private_networks": True, **sources}
    return make_config(corpus, folder / "index" / ".index", sources=values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_web", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (medians)")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str]] = []
    with FakeWeb() as web, tempfile.TemporaryDirectory() as tmp:
        news_site(web)
        folder = Path(tmp)
        # Bombs: a new process each, so its peak RSS is its own.
        for coding in ("gzip", "deflate"):
            inner = squeeze((bytes(1 << 20) for _ in range(BOMB_MIB)), coding)
            body = squeeze([inner], coding)
            web.serve(
                f"/bom-{coding}",
                Response(body=body, headers={"Content-Encoding": f"{coding}, {coding}"}),
            )
            results = [fetch_in_a_child(web.url(f"/bom-{coding}")) for _ in range(args.runs)]
            rss = statistics.median(r for r, _ in results)
            rows.append(
                (
                    f"{coding}×2 bomb ({len(body):,} bytes, {BOMB_MIB:,} MiB inflated): "
                    "peak RSS of the fetching process",
                    f"{rss:.0f} MB ({results[0][1]})",
                )
            )
        plain = [fetch_in_a_child(web.url(ARTICLE))[0] for _ in range(args.runs)]
        rows.append(
            (
                "the same process fetching an ordinary page: peak RSS",
                f"{statistics.median(plain):.0f} MB",
            )
        )
        # Slow headers: about 600 bytes, one every 0.2 s (two minutes), timeout_seconds 5.
        for slow in ("page", "robots.txt"):
            path = ARTICLE if slow == "page" else "/robots.txt"
            body = web.page("berita.html") if slow == "page" else b"User-agent: *\n"
            web.serve(path, Response(body=body, trickle=0.2))
            config = config_in(folder / f"slow-{slow}", timeout_seconds=5)
            seconds = [
                timed(lambda c=config: ingest(c, [web.url(ARTICLE)], run_reindex=False))
                for _ in range(args.runs)
            ]
            rows.append(
                (
                    f"headers a byte every 0.2 s ({slow}), timeout_seconds 5: given up after",
                    f"{statistics.median(seconds):.2f} s",
                )
            )
            news_site(web)  # the ordinary pages again
        # A feed of 30,000 entries (each link twice), 20 of them read (all 404 here).
        body = big_feed(web, 30_000)
        web.serve("/besar.xml", Response(body=body, content_type="application/rss+xml"))
        totals, parses = [], []
        for run in range(args.runs):
            config = config_in(folder / f"feed-{run}", feeds=[web.url("/besar.xml")])
            with time_spent_in(feedparser, "parse") as spent:
                totals.append(timed(lambda c=config: ingest(c, feeds=True, run_reindex=False)))
            parses.append(sum(spent))
        rows.append(
            (
                f"feed of 30,000 entries ({len(body) / 2**20:.1f} MB): read, 20 entries fetched",
                f"{statistics.median(totals):.2f} s",
            )
        )
        rows.append(("  of which feedparser", f"{statistics.median(parses):.2f} s"))
        # Pages of 40,000 and 80,000 paragraphs (the second over 5 MB: max_page_mb 10).
        ours: dict[int, float] = {}
        whole: dict[int, float] = {}
        for paragraphs in (40_000, 80_000):
            page = long_page(paragraphs)
            web.serve(f"/panjang-{paragraphs}", page)
            totals, floors = [], []
            for run in range(args.runs):
                config = config_in(folder / f"page-{paragraphs}-{run}", max_page_mb=10)
                url = web.url(f"/panjang-{paragraphs}")
                with time_spent_in(trafilatura, "bare_extraction") as spent:
                    totals.append(timed(lambda c=config, u=url: ingest(c, [u], run_reindex=False)))
                floors.append(sum(spent))
            total, floor = statistics.median(totals), statistics.median(floors)
            ours[paragraphs] = statistics.median(t - f for t, f in zip(totals, floors, strict=True))
            whole[paragraphs] = total
            rows.append(
                (
                    f"page of {paragraphs:,} paragraphs ({len(page) / 2**20:.1f} MB): "
                    "added, without reindex",
                    f"{total:.2f} s",
                )
            )
            rows.append(("  of which trafilatura", f"{floor:.2f} s"))
            rows.append(
                (
                    "  the rest (fetch, tanya's extraction, cutting, storing)",
                    f"{ours[paragraphs]:.2f} s",
                )
            )
        rows.append(
            (
                "80,000 ÷ 40,000 paragraphs: the rest / in all",
                f"{ours[80_000] / ours[40_000]:.2f} / {whole[80_000] / whole[40_000]:.2f}",
            )
        )
    print(f"| figure (median of {args.runs}) | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
