"""English questions for the reader's training: SQuAD 2.0 dev's own English questions paired
with the passages of its Indonesian machine translation (mrc/squad2_id_mt).

The reader reads an English question beside an Indonesian passage when a user asks in
English; every other training question is Indonesian. SQuAD 2.0-id keeps SQuAD's question
ids, so its passages and answers can be paired with the original English questions. The
copy of dev-v2.0.json this was made from (CS224n's, github.com/chrischute/squad,
data/dev-v2.0.json) holds 16 of its 35 articles with new question ids, so the pairing is by
paragraph: an English paragraph goes with the Indonesian passage that has as many questions,
the same answerable/unanswerable pattern and clearly the most names and numbers in common
(words that translation leaves alone), and its questions go in order. A paragraph without a
clear match is left out.

    python -m retrieval.tools.english_questions dev-v2.0.json

writes retrieval/tools/data/squad2_english.jsonl ({"id", "question_en"}, ids of
squad2_id_mt's questions) and squad2_english.json (where it came from, counts). SQuAD is
CC BY-SA 4.0 (Rajpurkar et al., 2018).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from .train_reader import load_set

DATA = Path(__file__).parent / "data"
OUT = DATA / "squad2_english.jsonl"
SET = "mrc/squad2_id_mt"
# A pairing needs this much overlap of names and numbers (Jaccard), and the runner-up at most
# RIVAL of it.
LEAST_OVERLAP = 0.2
RIVAL = 0.8
SOURCE = (
    "github.com/chrischute/squad data/dev-v2.0.json at 85623adeb9e6639f145081fea9cae2d8f3a26379 "
    "(SQuAD 2.0 dev, 16 of 35 articles)"
)


def invariant_words(text: str) -> set[str]:
    """Numbers and capitalised words of four letters or more: what translation keeps."""
    return {w.lower() for w in re.findall(r"\b(?:\d+(?:[.,]\d+)*|[A-Z][\w'-]{3,})", text)}


def pair(squad: dict, questions: Iterable[dict], passages: dict[str, str]) -> tuple[list, dict]:
    """(id, English question) pairs and, by reason, how many English questions were left out."""
    by_passage: dict[str, list[dict]] = {}
    for q in questions:
        by_passage.setdefault(q["doc_id"], []).append(q)
    words = {doc: invariant_words(passages[doc]) for doc in by_passage}
    pattern = {doc: tuple(bool(q["answers"]) for q in qs) for doc, qs in by_passage.items()}
    pairs: list[dict] = []
    left: dict[str, int] = {"no clear passage": 0, "passage already paired": 0}
    used: set[str] = set()
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            mine = invariant_words(paragraph["context"])
            shape = tuple(not q.get("is_impossible", False) for q in paragraph["qas"])
            scored = sorted(
                (
                    (len(mine & words[doc]) / max(1, len(mine | words[doc])), doc)
                    for doc in by_passage
                    if pattern[doc] == shape
                ),
                reverse=True,
            )
            if (
                not scored
                or scored[0][0] < LEAST_OVERLAP
                or (len(scored) > 1 and scored[1][0] > RIVAL * scored[0][0])
            ):
                left["no clear passage"] += len(shape)
                continue
            doc = scored[0][1]
            if doc in used:
                left["passage already paired"] += len(shape)
                continue
            used.add(doc)
            pairs += [
                {"id": theirs["id"], "question_en": ours["question"].strip()}
                for ours, theirs in zip(paragraph["qas"], by_passage[doc], strict=True)
            ]
    return pairs, left


def main(argv: list[str] | None = None) -> int:
    """Pair SQuAD 2.0 dev's English questions with SQuAD 2.0-id's passages."""
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.tools.english_questions", description=main.__doc__
    )
    parser.add_argument("squad", help="SQuAD 2.0 dev JSON (dev-v2.0.json)")
    parser.add_argument("--data", default="../shared/eval", help="evaluation data folder")
    parser.add_argument("--out", default=str(OUT), help="the JSONL to write")
    args = parser.parse_args(argv)
    try:
        squad = json.loads(Path(args.squad).read_text(encoding="utf-8"))
        questions, passages = load_set(Path(args.data), SET, "valid")
    except (OSError, ValueError, KeyError) as exc:
        print(f"english_questions: cannot read the data: {exc}", file=sys.stderr)
        return 1
    pairs, left = pair(squad, questions, passages)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8"
    )
    answerable = {q["id"] for q in questions if q["answers"]}
    about = {
        "what": "English questions of SQuAD 2.0 dev paired with mrc/squad2_id_mt valid's "
        "Indonesian passages and answers by question id",
        "source": SOURCE,
        "license": "CC BY-SA 4.0 (SQuAD 2.0, Rajpurkar, Jia and Liang, 2018)",
        "command": "python -m retrieval.tools.english_questions " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "pairs": len(pairs),
        "answerable": sum(p["id"] in answerable for p in pairs),
        "left_out": left,
    }
    out.with_suffix(".json").write_text(json.dumps(about, indent=2) + "\n", encoding="utf-8")
    print(f"{len(pairs)} English questions paired; left out: {left}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
