"""A chat's earlier turns, and a follow-up read in their context as a question of its own.

"Apa jabatannya?" after "Siapa yang berjabat tangan dengan Kim?" (answered "Sergei Shoigu") is
read as "Apa jabatan Sergei Shoigu?"; "Di kota mana?" as "Di kota mana Sergei Shoigu berjabat
tangan dengan Kim?". The rules, Indonesian and English, each a function below:

- pronouns for a person (dia, ia, beliau; he, she, him, his, her) become the person the last
  turns were about: the answer to a who-question, unanswered whoever it asked about ("orang
  yang berjabat tangan dengan Kim"), else a name or a titled role in the question. An answer
  that only repeats a name of its own question ("Kim" for "Siapa yang menyalami Kim?") is none;
- pronouns for several (mereka, keduanya; they, them, their) become a sure answer to a
  who-question, else names, else people the question named by a plural ("the participants",
  "para peserta"): never the answer to a what-question, nor what a "passage" reply found;
- the possessive -nya becomes the owner ("jabatannya" -> "jabatan Sergei Shoigu"), or on a verb
  the thing talked about ("memberikannya" -> "memberikan arahan Kim kepada politbiro"), or on
  a word of change the amount last asked about ("naiknya" -> "naiknya laba bersih …");
- places (sana, situ; there) become the last place answered or named, with a preposition of
  their own after a verb ("agree to there" -> "agree to in Rusia", "go there" -> "go to …");
- times (saat itu, hari itu, hari yang sama; then, the same day) become the last date answered;
- itu, ini, tersebut (it, that, this) standing alone become the last turn's event, on a noun
  ("rapat itu") the last turn's topic words; a relative "that" ("the cliff that collapsed")
  points at nothing;
- fragments without a predicate ("Di kota mana?", "Tanggal berapa?", "On what day?") get the
  event of the last turn that stated one (not "Apa jabatannya?" or another fragment): its
  question without the question word, with its answer where the question word stood;
- "Kalau X?" / "And X?" ask the last question about X, its head noun replaced ("Berapa laba
  bersih Kopi Nusantara?" + "Kalau pendapatannya?" -> "Berapa pendapatan Kopi Nusantara?"),
  with question words in X's language;
- "Selain X, siapa lagi?" / "What else besides X?" ask the last question for more than X.

A question none of these rules touches is read as it is: a new topic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .entities import (
    ORGANISATION_WORDS,
    PERSON_WORDS,
    PLACE_WORDS,
    asked_kind,
    is_derived,
    is_name,
    is_region,
    kinds,
    looks_like_name,
    person_name,
)
from .query import is_english, stop_words

REPLIES = ("answer", "passage", "declined")


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a chat: the question, how it was read, and what the reply was.

    `answer` is the marked span of an "answer" reply, or the span the reader found likeliest
    in a "passage" reply (not marked: a referent, never inserted as a fact); `rows` are the
    quoted passages' rows in the index build `version` (their rows mean nothing in another
    build)."""

    question: str
    read_as: str
    reply: str
    answer: str | None = None
    rows: tuple[int, ...] = ()
    version: str = ""

    @property
    def asked(self) -> str:
        """What the question asked for (entities.asked_kind)."""
        return asked_kind(self.read_as)

    def to_dict(self) -> dict:
        """A JSON-ready dict (`Turn.from_dict` reads it back)."""
        return {**asdict(self), "rows": list(self.rows)}

    @classmethod
    def from_dict(cls, data: dict) -> Turn:
        """A turn from `to_dict`'s shape, or from an answer as `bot.py --json` prints it
        (its "kind", and the first quote's answer); ValueError when it is neither."""
        if not isinstance(data, dict) or not isinstance(data.get("question"), str):
            raise ValueError("a turn is an object with a 'question'")
        reply = data.get("reply", data.get("kind", "answer"))
        if reply not in REPLIES:
            raise ValueError(f"a turn's reply is one of {', '.join(REPLIES)}, not {reply!r}")
        answer = data.get("answer")
        quotes = data.get("quotes")
        if "reply" not in data and isinstance(quotes, list):
            first = quotes[0] if quotes and isinstance(quotes[0], dict) else {}
            marked = first.get("answer")
            answer = marked.get("text") if isinstance(marked, dict) else None
        rows = data.get("rows") or []
        if not (answer is None or isinstance(answer, str)) or not all(
            isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rows
        ):
            raise ValueError("a turn's answer is text or null, and its rows whole numbers")
        read_as = data.get("read_as") or data["question"]
        if not isinstance(read_as, str):
            raise ValueError("a turn's read_as is text")
        return cls(
            data["question"],
            read_as,
            reply,
            answer,
            tuple(rows),
            str(data.get("version") or ""),
        )


def parse_history(text: str) -> list[Turn | str]:
    """A chat's earlier turns from text: a JSON array, or JSON lines, of earlier questions
    (text, asked again) and turns (`Turn.to_dict`, or answers as `bot.py --json` prints them);
    ValueError, saying where, when it is neither."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        items = json.loads(stripped) if stripped.startswith("[") else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    if items is None:
        items = []
        for number, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number} is not JSON ({exc.msg})") from exc
    turns: list[Turn | str] = []
    for number, item in enumerate(items, 1):
        if isinstance(item, str):
            turns.append(item)
            continue
        try:
            turns.append(Turn.from_dict(item))
        except ValueError as exc:
            raise ValueError(f"item {number}: {exc}") from exc
    return turns


@dataclass(frozen=True)
class FollowUp:
    """A question as read in its chat: `text` stands on its own; `rules` name the rules that
    rewrote it (none: it was read as it is)."""

    text: str
    rules: tuple[str, ...] = ()

    @property
    def depends(self) -> bool:
        """Whether it leans on the chat (writing out chat spellings does not)."""
        return any(rule != "chat words" for rule in self.rules)


TOKEN = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*|\s+|[^\w\s]|_")
PERSON_PRONOUNS = frozenset("dia ia beliau doi he she him".split())
POSSESSIVE_PRONOUNS = frozenset("his her".split())
GROUP_PRONOUNS = frozenset("mereka keduanya they them".split())
GROUP_POSSESSIVE = frozenset(["their"])
DEMONSTRATIVES = frozenset("itu ini tersebut".split())
THING_PRONOUNS = frozenset("it that this".split())
PLACE_PRONOUNS = frozenset("sana situ there".split())
# Prepositions a place word is the object of: "di sana", "from there" (not "agree to there").
PLACE_PREPOSITIONS = frozenset(
    "di ke dari sampai hingga menuju dekat sekitar in at from near around over out inside".split()
)
# Verbs of going, after which "there" is where to: "go there" -> "go to Rusia".
MOTION_VERBS = frozenset(
    """go goes went going gone come comes came travel travels travelled traveled fly flew
    flown move moved get got return returned send sent pergi datang berangkat kembali pulang
    terbang pindah""".split()
)
# Nouns of time that, with a demonstrative, point at the last turn's time: "saat itu".
TIME_NOUNS = frozenset("saat waktu ketika kala hari tanggal tahun bulan pekan minggu".split())
ENGLISH_TIME_NOUNS = frozenset("day date time week month year night morning evening".split())
# Verbs whose "that" begins what was said: "What did KCNA say that Kim wanted?".
SAYING_VERBS = frozenset(
    """say says said tell told think thought believe believed know knew claim claimed report
    reported warn warned state stated add added announce announced confirm confirmed mean
    meant show showed suggest suggested argue argued note noted""".split()
)
ARTICLES = frozenset("the a an".split())
# "hari ini", "saat ini": now, not the conversation.
NOW_NOUNS = frozenset("hari saat kali tahun bulan minggu pekan malam pagi siang sore".split())
# Connectives with a demonstrative that point at nothing: "selain itu", "oleh karena itu".
CONNECTIVES = frozenset("selain karena untuk meski walau namun".split())
QUESTION_WORDS = frozenset(
    """apa apakah siapa siapakah kapan kapankah berapa berapakah seberapa mana manakah dimana
    dimanakah kemana darimana bagaimana mengapa kenapa bilamana
    what who whom whose when where why how which""".split()
)
# Words between a question word and the event: "Siapa yang …", "When did …".
AUXILIARIES = frozenset(
    """yang is are was were do does did will would can could should has have had be been""".split()
)
PREPOSITIONS = frozenset(
    """di ke dari pada dengan untuk tentang soal oleh bagi dalam kepada terhadap sejak selama
    sampai hingga menurut
    on in at to from with for about by of during since until till""".split()
)
FUNCTION_WORDS = QUESTION_WORDS | AUXILIARIES | PREPOSITIONS
# Words a fragment may hold besides question words and prepositions: "Di kota mana?".
SLOT_NOUNS = frozenset(
    """kota negara provinsi daerah wilayah tempat lokasi desa kabupaten kecamatan tanggal hari
    tahun bulan jam pukul menit waktu lama jauh banyak orang jumlah nama bidang tim partai klub
    lagi saja sih dong ya kah nah terus trus lalu kalau jadi persisnya tepatnya sebenarnya
    city country province region place area areas village date day year month time hour long
    many much far people number name field fields exactly else again then so also""".split()
)
# "Kalau X?", "Bagaimana dengan X?", "And X?", "What about X?": the last question, about X.
ABOUT = re.compile(
    r"^(?:(?:lalu|terus|trus|dan|nah)\s+)?(?:kalau|kalo|bagaimana dengan|gimana dengan|"
    r"dan|and|what about|how about)\s+(?P<topic>.+?)\s*\??$",
    re.IGNORECASE,
)
# "And then?", "Lalu selanjutnya?": what came next, which no earlier turn says.
NEXT_WORDS = frozenset("then next after that lalu terus selanjutnya kemudian setelahnya".split())
# "Siapa Presiden Korea Selatan?", "Who is the leader of North Korea?": the question names a
# person by a description, which a pronoun after it can stand for.
COPULAR = re.compile(
    r"^(?:siapa(?:kah)?|who (?:is|was|are|were))\s+(?P<who>(?!yang\b|that\b|saja\b)[^?]+)$",
    re.IGNORECASE,
)
# "Siapa yang berjabat tangan dengan Kim?", "Who met Kim?": the question asks who did something.
SUBJECT_ASKED = re.compile(
    r"^(?:siapa(?:kah)?(?: saja)? yang|who)\s+"
    r"(?P<did>(?!(?:is|was|are|were|do|does|did|has|have|had)\b)[^?]+)$",
    re.IGNORECASE,
)
# People named by a plural, whom "mereka" / "they" may stand for: "para peserta", "the
# participants".
GROUP_NOUN = re.compile(
    r"\bpara [^\W\d_]+|\bthe (?:participants|members|officials|residents|families|players|"
    r"researchers|scientists|leaders|voters|victims|villagers|delegates|ministers|candidates|"
    r"parents|children|doctors|survivors|evacuees|workers|volunteers|rescuers|students|fans)\b",
    re.IGNORECASE,
)
# Light verbs an event pronoun is the subject of: "Kapan itu terjadi?" -> "Kapan <event>?".
LIGHT_VERBS = frozenset(
    "terjadi berlangsung diadakan digelar dilakukan happen happened take took place occur".split()
)
# -nya on these is not a pronoun (or names the speaker of the last turn's words only vaguely).
NOT_POSSESSIVE = frozenset(
    """hanya punya tanya bertanya ditanya nya sebenarnya selanjutnya sebelumnya sesudahnya
    setelahnya sesungguhnya biasanya akhirnya rupanya misalnya khususnya umumnya seharusnya
    semestinya sepertinya agaknya tampaknya kayaknya nampaknya sayangnya untungnya pokoknya
    lainnya berikutnya selebihnya adanya bagaimananya terutamanya persisnya tepatnya
    sebaliknya seterusnya kira-kiranya""".split()
)
VERB_PREFIXES = ("me", "di", "ber", "ter", "memper", "diper")
# Words for a change in an amount: their -nya is the amount ("naiknya" -> "naiknya laba
# bersih …"); on a bare verb the -nya stays, as it makes the verb a noun.
CHANGE_VERBS = frozenset("naik turun tumbuh jatuh anjlok merosot melonjak".split())
CHANGE_WORDS = CHANGE_VERBS | frozenset(
    """kenaikan penurunan pertumbuhan peningkatan selisih perubahan lonjakan kemerosotan
    penambahan pengurangan persentase""".split()
)
# Stop words left out of a topic: what the last question was about, without asking.
TOPIC_STOP = (
    QUESTION_WORDS
    | AUXILIARIES
    | frozenset(
        "saja sih dong ya kah nah terus trus lalu kalau apakah the a an ini itu tersebut".split()
    )
)


def _words(tokens: Sequence[str]) -> list[int]:
    """Indices of the word tokens."""
    return [i for i, t in enumerate(tokens) if t[:1].isalnum()]


def tokens_of(text: str) -> list[str]:
    """The text as words, spaces and marks: joined back, it is the text."""
    return TOKEN.findall(text)


def strip_question(text: str) -> str:
    """The text without its final question or full stop marks."""
    return text.strip().rstrip("?!.").strip()


def name_runs(text: str) -> list[str]:
    """Runs of capitalised words, with a title before them ("Presiden Korea Selatan", "menteri
    pertahanan Rusia" counts from the title): candidates for what a pronoun points at."""
    tokens = tokens_of(text)
    indices = _words(tokens)
    runs: list[list[int]] = []
    current: list[int] = []
    for n, i in enumerate(indices):
        word = tokens[i]
        lower = word.casefold()
        titled = lower in PERSON_WORDS and n + 1 < len(indices)
        # A capitalised first word is only a name when it is no common word ("Dengan siapa …",
        # "Negara mana …").
        following = tokens[indices[n + 1]].casefold() if n + 1 < len(indices) else ""
        common = lower in FUNCTION_WORDS or (
            n == 0 and (lower in stop_words() or lower in SLOT_NOUNS or following in QUESTION_WORDS)
        )
        if (is_name(word) and not common) or (titled and not current):
            current.append(i)
        elif current and lower in PERSON_WORDS:
            current.append(i)
        else:
            if current:
                runs.append(current)
            current = []
    if current:
        runs.append(current)
    found = []
    for run in runs:
        # "Kim's state visit": the name is "Kim".
        text_run = re.sub(r"['’]s$", "", "".join(tokens[run[0] : run[-1] + 1]).strip())
        # A title alone ("presiden") is no name.
        if any(is_name(tokens[i]) for i in run):
            found.append(text_run)
    return found


def is_place(name: str, context: str = "") -> bool:
    """A name that is a country or region, or follows a place word or preposition."""
    lower = [w.casefold() for w in re.findall(r"[^\W_]+", name)]
    if is_region(name) or (lower and lower[0] in PLACE_WORDS):
        return True
    before = context.split(name)[0].split()[-1:] if name in context else []
    return bool(before) and before[0].casefold() in {"di", "ke", "dari", "in", "to", "at", "from"}


def answer_of(turn: Turn) -> str | None:
    """The turn's answer as something to point back at: none when it only repeats a name the
    question itself holds ("Kim Jong Un" for "Siapa yang berjabat tangan dengan Kim?" cannot
    be who shook Kim's hand)."""
    if not turn.answer:
        return None
    if turn.asked == "person":
        named = {w.casefold() for w in re.findall(r"[^\W_]+", person_name(turn.answer))}
        for run in name_runs(turn.read_as):
            asked = {w.casefold() for w in re.findall(r"[^\W_]+", run) if is_name(w)}
            # "Kim" in the question, "Kim Jong Un" the span (not "Kim Jong Il" and "Kim Jong Un").
            if asked and (asked <= named or named <= asked):
                return None
    return turn.answer


def _person_of(turn: Turn, exclude: str, sure: bool = False) -> str | None:
    """The person a turn is about, its subject: the answer to "Siapa yang …?", what "Siapa
    X?" describes, and unanswered "orang yang …"; else (the answer of "Dengan siapa Kim …?" is
    no subject) its first name that is no place. With `sure`, only a marked answer counts."""
    answer = answer_of(turn) if turn.reply == "answer" or not sure else None
    if turn.asked == "person":
        _, _, _, preposition = split_question(turn.read_as)
        if preposition is None:
            if answer and is_someone(answer):
                name = person_name(answer)
                if name.casefold() not in exclude:
                    return name
            described = COPULAR.match(strip_question(turn.read_as))
            if described and described["who"].casefold() not in exclude:
                return described["who"]
            asked = SUBJECT_ASKED.match(strip_question(turn.read_as))
            if asked:
                # Unanswered, "Siapa yang X?" is still about whoever did X.
                english = is_english(turn.read_as.casefold().split())
                return f"{'the person who' if english else 'orang yang'} {asked['did']}"
    for run in name_runs(turn.read_as):
        if not is_place(run, turn.read_as) and run.casefold() not in exclude:
            return run
    if turn.asked == "person" and answer and is_someone(answer):
        name = person_name(answer)
        return name if name.casefold() not in exclude else None
    return None


def is_someone(text: str) -> bool:
    """Text that can be "dia": a person's name or role, not an organisation ("Partai …")."""
    lower = [w.casefold() for w in re.findall(r"[^\W_]+", text)]
    return kinds(text).person and not any(w in ORGANISATION_WORDS for w in lower)


def _place_of(turn: Turn, exclude: str) -> str | None:
    """The place a turn is about: a where-question's answer, else a place it names."""
    if turn.answer and turn.asked == "place" and turn.answer.casefold() not in exclude:
        return turn.answer
    for run in name_runs(turn.read_as):
        if is_place(run, turn.read_as) and run.casefold() not in exclude:
            return run
    return None


def _group_of(turn: Turn, exclude: str) -> str | None:
    """The several people or parties a turn is about: a who-question's answer naming more than
    one, else its names joined, else the people it names by a plural ("para peserta", "the
    participants")."""
    # Only a sure answer to a who-question names people: what a "passage" reply found, or the
    # answer to "What did they work out?", is no one.
    answer = answer_of(turn) if turn.reply == "answer" and turn.asked == "person" else None
    if answer and re.search(r",| dan | and ", answer):
        return answer
    names = [
        n
        for n in name_runs(turn.read_as)
        if n.casefold() not in exclude and not is_place(n, turn.read_as)
    ]
    if answer and is_someone(answer):
        names.append(answer)
    joiner = " and " if is_english(turn.read_as.casefold().split()) else " dan "
    if len(names) >= 2:
        return joiner.join(names[-2:])
    group = GROUP_NOUN.search(turn.read_as)
    if group and group.group().casefold() not in exclude:
        return group.group()
    return _person_of(turn, exclude, sure=True)


def _time_of(turn: Turn) -> str | None:
    """The time a turn answered."""
    return turn.answer if turn.answer and turn.asked == "date" else None


def _first(turns: Sequence[Turn], find) -> str | None:
    """The first referent found, from the last turn back."""
    for turn in reversed(turns):
        found = find(turn)
        if found:
            return found
    return None


# The longest answer to an "Apa …?" question an event takes in.
EVENT_ANSWER_WORDS = 4


def split_question(text: str) -> tuple[str, str, str, str | None]:
    """A question as (before, question phrase, after, its preposition): "Di kota mana Kim
    berjabat tangan?" -> ("", "Di kota mana", "Kim berjabat tangan", "di"). The phrase runs from
    a preposition or slot noun before the question word to the auxiliaries after it; without a
    question word, everything is `before`."""
    tokens = tokens_of(strip_question(text))
    indices = _words(tokens)
    lower = [tokens[i].casefold() for i in indices]
    start = next((n for n, w in enumerate(lower) if w in QUESTION_WORDS), None)
    if start is None:
        return strip_question(text), "", "", None
    first = start
    while first > 0 and (lower[first - 1] in PREPOSITIONS or lower[first - 1] in SLOT_NOUNS):
        first -= 1
    end = start + 1
    if lower[start] in ("mana", "berapa", "what", "which", "how"):
        while end < len(lower) and lower[end] in SLOT_NOUNS:
            end += 1
    while end < len(lower) and lower[end] in AUXILIARIES:
        end += 1
    cut = indices[end] if end < len(indices) else len(tokens)
    before = "".join(tokens[: indices[first]]).strip()
    phrase = "".join(tokens[indices[first] : cut]).strip()
    after = "".join(tokens[cut:]).strip()
    preposition = lower[first] if lower[first] in PREPOSITIONS else None
    return before, phrase, after, preposition


def event(turn: Turn) -> str:
    """The last turn as a statement: its question without the question phrase, and its answer
    where that phrase stood ("Siapa yang berjabat tangan dengan Kim?" + "Sergei Shoigu" ->
    "Sergei Shoigu berjabat tangan dengan Kim"); a time, place or number answer goes last."""
    before, phrase, after, preposition = split_question(turn.read_as)
    answer = answer_of(turn) if turn.reply == "answer" and phrase else None
    if answer and turn.asked == "other" and len(answer.split()) > EVENT_ANSWER_WORDS:
        answer = None  # a long answer to "Apa …?" would bury the event it answers
    if not answer:
        return " ".join(p for p in (before, after) if p)
    english = is_english(turn.read_as.casefold().split())
    asked = turn.asked
    if preposition:
        return " ".join(p for p in (before, after, preposition, answer) if p)
    if asked == "place":
        return " ".join(p for p in (before, after, "in" if english else "di", answer) if p)
    if asked in ("date", "number"):
        return " ".join(p for p in (before, after, answer) if p)
    return " ".join(p for p in (before, answer, after) if p)


def topic(turn: Turn) -> str:
    """What the last turn was about, in its own words: its question without the question
    phrase ("Apa arahan Kim kepada politbiro?" -> "arahan Kim kepada politbiro")."""
    before, _, after, _ = split_question(turn.read_as)
    return " ".join(p for p in (before, after) if p)


def is_fragment(words: Sequence[str]) -> bool:
    """A question without a subject or predicate of its own: only question words,
    prepositions and slot nouns ("Di kota mana?", "Tanggal berapa?", "On what day?", "Why?"),
    or at most one other word and no name in three ("Kembali kapan?", "Berapa kecamatan?")."""
    lower = [w.casefold() for w in words]
    if not any(w in QUESTION_WORDS for w in lower):
        return False
    other = [
        w
        for w in words
        if not (
            w.casefold() in QUESTION_WORDS
            or w.casefold() in PREPOSITIONS
            or w.casefold() in SLOT_NOUNS
            or w.casefold() in AUXILIARIES
        )
    ]
    if not other:
        return True
    named = any(looks_like_name(w, n == 0) for n, w in enumerate(words))
    return len(words) <= 3 and len(other) == 1 and not named


def _possessive_root(word: str, first: bool = False) -> str | None:
    """The word a possessive -nya is on ("jabatannya" -> "jabatan"), or None. The `first`
    word of a sentence is capitalised anyway: there only a root that may be a name is one."""
    lower = word.casefold()
    if not lower.endswith("nya") or len(lower) < 6 or lower in NOT_POSSESSIVE:
        return None
    if word[:1].isupper() and not word.isupper() and looks_like_name(word[:-3], first):
        return None  # a name: Kenya, Sonya
    return word[:-3]


# Chat spellings read as the words they stand for ("yg" -> "yang", "korut" -> "Korea Utara").
CHAT_WORDS = {
    "yg": "yang", "dgn": "dengan", "utk": "untuk", "krn": "karena", "tdk": "tidak",
    "gak": "tidak", "nggak": "tidak", "ngga": "tidak", "sdh": "sudah", "udah": "sudah",
    "blm": "belum", "dlm": "dalam", "kpd": "kepada", "tsb": "tersebut", "aja": "saja",
    "trus": "terus", "gmn": "bagaimana", "gimana": "bagaimana", "knp": "kenapa",
    "brp": "berapa", "kpn": "kapan", "dmn": "di mana", "sm": "sama", "org": "orang",
    "korut": "Korea Utara", "korsel": "Korea Selatan", "disana": "di sana",
    "kesana": "ke sana", "darisana": "dari sana", "disitu": "di situ", "kesitu": "ke situ",
    "darisitu": "dari situ",
}  # fmt: skip
CHAT_WORD = re.compile(r"\b(" + "|".join(CHAT_WORDS) + r")\b", re.IGNORECASE)


def plain_words(question: str) -> str:
    """The question with chat spellings written out ("siapa yg ngelaporin" -> "siapa yang
    ngelaporin"); the rest as it was."""
    return CHAT_WORD.sub(lambda m: CHAT_WORDS[m.group().casefold()], question)


def read_in_context(question: str, turns: Sequence[Turn], history_turns: int = 3) -> FollowUp:
    """The question as a question of its own, given the chat's earlier turns (oldest first).
    Chat spellings are written out first (the rule "chat words")."""
    plain = plain_words(question)
    follow = _in_context(plain, turns, history_turns)
    if plain != question and not follow.depends:
        return FollowUp(follow.text, ("chat words",))
    return follow


def _in_context(question: str, turns: Sequence[Turn], history_turns: int) -> FollowUp:
    """read_in_context, after the chat spellings."""
    turns = [t for t in turns[-history_turns:] if t.read_as.strip()] if history_turns else []
    if not turns:
        return FollowUp(question)
    last = turns[-1]
    about = ABOUT.match(question.strip())
    subject = about["topic"].split() if about else []
    if (
        about
        and len(subject) <= 5
        and not any(w.casefold() in QUESTION_WORDS for w in subject)
        and not all(w.casefold() in NEXT_WORDS for w in subject)
    ):
        anchor = stating(turns)
        # The question word is in the language of the event it is put before.
        slot = _slot_question(subject, is_english(anchor.read_as.casefold().split()))
        if slot:
            # "And the date?", "Kalau tempatnya?": the last event, asked for that.
            return FollowUp(f"{slot} {event(anchor)}?", ("fragment",))
        # "Kalau arahan Kim?": the last question, asked about something else.
        english = is_english(question.casefold().split())
        return FollowUp(_ask_about(last, about["topic"], english), ("fragment",))
    besides = BESIDES.match(question.strip()) or BESIDES_FIRST.match(question.strip())
    if besides:
        # "What else besides military?": the last question, asked for more than X.
        return FollowUp(_ask_besides(stating(turns), besides), ("fragment",))
    tokens = tokens_of(question)
    exclude = question.casefold()
    rules: list[str] = []
    skip: set[int] = set()  # words another rule has taken in
    indices = _words(tokens)
    lower = {i: tokens[i].casefold() for i in indices}
    for n, i in enumerate(indices):
        if i in skip:
            continue
        word, w = tokens[i], lower[i]
        before = lower[indices[n - 1]] if n else ""
        after = lower[indices[n + 1]] if n + 1 < len(indices) else ""
        replacement = None
        if w in PERSON_PRONOUNS:
            replacement, rule = _first(turns, lambda t: _person_of(t, exclude)), "pronoun"
        elif w in POSSESSIVE_PRONOUNS:
            person = _first(turns, lambda t: _person_of(t, exclude))
            replacement, rule = (f"{person}'s" if person else None), "pronoun"
        elif w in GROUP_PRONOUNS:
            replacement, rule = _first(turns, lambda t: _group_of(t, exclude)), "pronoun"
        elif w in GROUP_POSSESSIVE:
            group = _first(turns, lambda t: _group_of(t, exclude))
            replacement, rule = (f"{group}'s" if group else None), "pronoun"
        elif w in PLACE_PRONOUNS:
            replacement, rule = _first(turns, lambda t: _place_of(t, exclude)), "place"
            if replacement and before not in PLACE_PREPOSITIONS:
                # "agree to there" is "agree to in Rusia", "go there" "go to Rusia": a place
                # never stands bare after a verb or the verb's own preposition.
                english = w == "there"
                motion = before in MOTION_VERBS
                preposition = ("to" if motion else "in") if english else ("ke" if motion else "di")
                replacement = f"{preposition} {replacement}"
        elif w == "then" and (not after or before in PREPOSITIONS) and before not in ("and", "so"):
            # "What did Kim say then?", "since then": the time last answered.
            time = _first(turns, _time_of)
            if not time:
                continue
            replacement, rule = (time if before in PREPOSITIONS else f"on {time}"), "time"
        elif _same_time(lower, indices, n):
            # "hari yang sama (itu)", "the same day": the time last answered.
            time = _first(turns, _time_of)
            if not time:
                continue
            if w == "sama":  # "hari yang sama itu" -> "hari Rabu (20/9)"
                tokens[indices[n - 1]] = ""
                if after in DEMONSTRATIVES:
                    tokens[indices[n + 1]] = ""
                    skip.add(indices[n + 1])
            else:  # "the same day" -> "Rabu (20/9)"
                tokens[indices[n - 1]] = tokens[indices[n + 1]] = ""
            replacement, rule = time, "time"
        elif w in DEMONSTRATIVES or w in THING_PRONOUNS:
            replacement, rule = _demonstrative(tokens, indices, n, turns, before, after)
        elif (root := _possessive_root(word, n == 0)) is not None:
            person = _first(turns, lambda t: _person_of(t, exclude))
            if root.casefold() in CHANGE_WORDS:
                # "Naiknya", "kenaikannya": the change of the amount last asked about.
                amount = next((t for t in reversed(turns) if t.asked == "number"), last)
                owner = topic(amount)
                replacement = f"{word if root.casefold() in CHANGE_VERBS else root} {owner}"
            elif root.casefold() == "diri":
                replacement = person
            elif root.casefold().startswith("di") and person:
                # A passive verb's -nya is who did it: "ditemuinya" -> "ditemui Kim".
                replacement = f"{root} {person}"
            elif root.casefold().startswith(VERB_PREFIXES):
                # An active verb's -nya is what it acts on: the person just asked about, or
                # the last turn's topic ("memberikannya" -> "memberikan arahan Kim").
                thing = person if last.asked == "person" and person else topic(last)
                replacement = f"{root} {thing}"
            else:
                replacement = f"{root} {person or topic(last)}"
            rule = "possessive"
        else:
            continue
        if not rule:
            continue
        if replacement is not None:
            tokens[i] = replacement
            rules.append(rule)
        else:
            # A pointer back with nothing to point at: the last turn's topic goes along.
            tokens[i] = f"{word} ({topic(last)})"
            rules.append(rule)
    text = re.sub(r"\s+([?!.,])", r"\1", " ".join("".join(tokens).split()))
    words = [tokens[i] for i in indices]
    if not rules and is_fragment(words):
        return FollowUp(_with_event(question, stating(turns)), ("fragment",))
    return FollowUp(text, tuple(dict.fromkeys(rules)))


def _same_time(lower: dict[int, str], indices: list[int], n: int) -> bool:
    """Whether word n is "sama" of "hari yang sama" or "same" of "the same day"."""
    w = lower[indices[n]]
    if w == "sama":
        return n >= 2 and lower[indices[n - 1]] == "yang" and lower[indices[n - 2]] in TIME_NOUNS
    return (
        w == "same"
        and n >= 1
        and lower[indices[n - 1]] == "the"
        and n + 1 < len(indices)
        and lower[indices[n + 1]] in ENGLISH_TIME_NOUNS
    )


def _demonstrative(
    tokens: list[str], indices: list[int], n: int, turns: Sequence[Turn], before: str, after: str
) -> tuple[str | None, str]:
    """What itu / ini / tersebut / it / that / this at word n points at, and the rule."""
    last = turns[-1]
    w = tokens[indices[n]].casefold()
    if w == "that":
        # "the cliff that collapsed", "say that": a relative or a clause, pointing at nothing.
        two_before = tokens[indices[n - 2]].casefold() if n >= 2 else ""
        if before in SAYING_VERBS or (two_before in ARTICLES and before not in FUNCTION_WORDS):
            return tokens[indices[n]], ""
    if w == "ini" and before in NOW_NOUNS:
        return tokens[indices[n]], ""  # "hari ini": now
    if before in CONNECTIVES:
        return tokens[indices[n]], ""
    if w == "this" and after in ("year", "month", "week", "morning", "evening", "time"):
        return tokens[indices[n]], ""
    following = tokens[indices[n + 1]] if n + 1 < len(indices) else ""
    if w in ("itu", "ini") and before in QUESTION_WORDS and is_name(following):
        return tokens[indices[n]], ""  # "Apa itu KCNA?": what is, not what that was
    if (
        w in ("that", "this")
        and following
        and after not in AUXILIARIES | PREPOSITIONS
        and after not in LIGHT_VERBS
    ):
        # "that doctor" -> "the doctor (<topic>)"; "that happen" is the event, below.
        tokens[indices[n + 1]] = f"{following} ({topic(last)})"
        return "the", "demonstrative"
    if before in TIME_NOUNS:
        time = _first(turns, _time_of)
        if time:
            # "saat itu" -> "saat Rabu (20/9)"; the noun is kept.
            return time, "demonstrative"
        return event(last), "demonstrative"
    standing = before in QUESTION_WORDS or before in AUXILIARIES or before in PREPOSITIONS
    if n == 0 or standing or (w in THING_PRONOUNS and not after):
        # "Kapan itu terjadi?", "When was that?", "Apa itu?": the last turn's event.
        _drop_light_verb(tokens, indices, n)
        return event(last), "demonstrative"
    # On a noun ("rapat itu") or an object ("want it for"): what the last turn was about.
    return f"({topic(last)})" if w in DEMONSTRATIVES else topic(last), "demonstrative"


def _drop_light_verb(tokens: list[str], indices: list[int], n: int) -> None:
    """ "Kapan itu terjadi?" reads as "Kapan <event>?": the light verb after the event goes."""
    if n + 1 < len(indices) and tokens[indices[n + 1]].casefold() in LIGHT_VERBS:
        tokens[indices[n + 1]] = ""
        if n + 2 < len(indices) and tokens[indices[n + 2]].casefold() == "place":
            tokens[indices[n + 2]] = ""


def states_event(turn: Turn) -> bool:
    """Whether the turn's own question said what happened: not a fragment ("Apa jabatannya?",
    "Dari negara mana?") or "Kalau X?", whose readings borrowed an event or have none."""
    question = plain_words(turn.question)
    tokens = tokens_of(question)
    words = [tokens[i] for i in _words(tokens)]
    about = ABOUT.match(question.strip())
    asks = about is not None and not any(
        w.casefold() in QUESTION_WORDS for w in about["topic"].split()
    )
    return not (is_fragment(words) or asks)


def stating(turns: Sequence[Turn]) -> Turn:
    """The last turn that said what happened, which a fragment asks more about; the last turn
    when none did."""
    return next((t for t in reversed(turns) if states_event(t)), turns[-1])


def _with_event(question: str, last: Turn) -> str:
    """A fragment completed with the last turn's event: "Di kota mana?" -> "Di kota mana
    Sergei Shoigu berjabat tangan dengan Kim?"."""
    mark = "?" if question.rstrip().endswith("?") else ""
    return f"{strip_question(question)} {event(last)}{mark or '?'}"


# "And the date?" asks when; "Kalau tempatnya?" where: slot nouns and their question words.
SLOTS = (
    (
        ("kapan", "when"),
        frozenset("date day time year month tanggal hari waktu tahun bulan".split()),
    ),
    (("di mana", "where"), frozenset("place location city tempat lokasi kota".split())),
    (("berapa", "how many"), frozenset("number total amount jumlah angka".split())),
)


def _slot_question(subject: Sequence[str], english: bool) -> str | None:
    """The question word a bare slot noun stands for ("the date" -> "when"), or None."""
    words = [w.casefold().removesuffix("nya") for w in subject if w.casefold() != "the"]
    for (indonesian, english_word), nouns in SLOTS:
        if words and all(w in nouns for w in words):
            return (english_word if english else indonesian).capitalize()
    return None


# The question words of one language in the other, for "And X?" after a question in another
# language: "And the net profit?" after "Berapa pendapatan …?" asks "What is the net profit …?".
IN_ENGLISH = {
    "apa": "What is", "apakah": "What is", "berapa": "What is", "siapa": "Who is",
    "siapakah": "Who is", "kapan": "When is", "mana": "Where is", "dimana": "Where is",
    "mengapa": "Why is", "kenapa": "Why is", "bagaimana": "How is",
}  # fmt: skip
IN_INDONESIAN = {
    "what": "Apa", "which": "Apa", "who": "Siapa", "whom": "Siapa", "when": "Kapan",
    "where": "Di mana", "why": "Mengapa", "how": "Bagaimana",
}  # fmt: skip
# The longest head noun replaced by "Kalau X?": "laba bersih", "net profit".
HEAD_WORDS = 2


def _head(after: str) -> tuple[str, str]:
    """What a question asks about split into its head noun and the rest: "laba bersih Kopi
    Nusantara tahun 2023" -> ("laba bersih", "Kopi Nusantara tahun 2023"), "the coach of
    Bintang Timur" -> ("the coach", "of Bintang Timur"); no head when it starts with a name,
    verb or function word, and no rest when nothing follows it. An Indonesian head takes a
    root word after it ("laba bersih"), not a derived noun, which is whose ("pendapatan
    perseroan")."""
    found = after.split()
    english = bool(found) and found[0].casefold() in ARTICLES
    start = 1 if english else 0
    end = start
    while (
        end < len(found)
        and end - start < HEAD_WORDS
        and re.fullmatch(r"[a-z]+(?:-[a-z]+)*", found[end])
        and found[end] not in FUNCTION_WORDS
        and not (found[end].startswith(("me", "di")) and len(found[end]) > 5)
        and (end == start or english or not is_derived(found[end]))
    ):
        end += 1
    if end == start or end == len(found):
        return "", after
    return " ".join(found[:end]), " ".join(found[end:])


def _ask_about(last: Turn, subject: str, english: bool) -> str:
    """The last question asked about another subject, in the subject's language: "Berapa laba
    bersih Kopi Nusantara?" + "pendapatannya" -> "Berapa pendapatan Kopi Nusantara?"; with no
    head noun to replace, its question phrase alone: "Kapan KCNA melaporkan rapat politbiro?" +
    "arahan Kim" -> "Kapan arahan Kim?"."""
    before, phrase, after, _ = split_question(last.read_as)
    subject = strip_question(subject)
    if not subject:
        return strip_question(last.read_as) + "?"
    if not phrase:
        return f"{subject} {topic(last)}?"
    head, rest = _head(after) if not before else ("", after)
    if head:
        *others, final = subject.split()
        root = _possessive_root(final)
        # "Kalau kaptennya?": the rest of the question says whose.
        subject = " ".join([*others, root if root else final])
    if english != is_english(last.read_as.casefold().split()):
        asked = phrase.split()[-1] if phrase.casefold().startswith(("di ", "ke ")) else phrase
        words = [w.casefold() for w in asked.split()]
        table = IN_ENGLISH if english else IN_INDONESIAN
        found = next((table[w] for w in words if w in table), None)
        if found and not english and last.asked == "number":
            found = "Berapa"  # "What was the revenue?" asks an amount
        if found is None:
            return f"{phrase} {subject}?"
        phrase = found
        if head and english and rest.split()[0].casefold() not in PREPOSITIONS:
            rest = f"of {rest}"
        elif head and not english and rest.split()[0].casefold() == "of":
            rest = rest.split(maxsplit=1)[1] if len(rest.split()) > 1 else ""
    elif (
        len(subject.split()) > 1 and phrase.split()[-1].casefold() == subject.split()[0].casefold()
    ):
        subject = " ".join(subject.split()[1:])  # "Berapa orang yang" + "yang luka-luka"
    if head:
        return f"{phrase} {subject} {rest}?"
    return f"{phrase} {subject}?"


# "What else besides military?", "Siapa lagi selain Seoul?", "Selain Seoul, siapa lagi?".
BESIDE_WORDS = r"(?P<beside>selain|kecuali|besides|apart from|other than|except)"
ASK_MORE = (
    r"(?P<ask>(?:apa|siapa|mana|di mana|ke mana|berapa)(?:\s+(?:lagi|saja|lainnya))+|"
    r"(?:what|who|which|where)(?:\s+\w+)?\s+else)"
)
BESIDES = re.compile(rf"^{ASK_MORE}\s*,?\s+{BESIDE_WORDS}\s+(?P<x>[^?,]+?)\s*\??$", re.IGNORECASE)
BESIDES_FIRST = re.compile(
    rf"^{BESIDE_WORDS}\s+(?P<x>[^?,]+?)\s*,?\s+{ASK_MORE}\s*\??$", re.IGNORECASE
)


def _ask_besides(last: Turn, besides: re.Match) -> str:
    """The last question asked for what else besides X, X taken out of it, in the asker's
    order: "Who did Kim agree with to boost military cooperation?" + "What else besides
    military?" -> "What else besides military did Kim agree with to boost cooperation?"."""
    _, phrase, _, _ = split_question(last.read_as)
    auxiliaries = []
    for word in reversed(phrase.split()):
        if word.casefold() not in AUXILIARIES:
            break
        auxiliaries.insert(0, word)
    left_out = {w.casefold() for w in besides["x"].split()}
    rest = [w for w in topic(last).split() if w.casefold() not in left_out]
    ask, beside = besides["ask"], besides["beside"]
    if besides.re is BESIDES_FIRST:
        # In the asker's order: "Selain Seoul, siapa lagi yang khawatir …?".
        parts = [beside[:1].upper() + beside[1:], f"{besides['x']},", ask.casefold()]
    else:
        parts = [ask[:1].upper() + ask[1:], beside.casefold(), besides["x"]]
    return " ".join([*parts, *auxiliaries, *rest]) + "?"
