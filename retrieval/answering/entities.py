"""What a piece of text names, by rules: a time, a number, a place, a person or organisation.

Used twice: to check that an answer span is of the kind its question asks for (a who-question
is not answered with a date), and to find what a follow-up's pronoun points back to (a person
for "dia", a place for "di sana"). Indonesian and English. The rules only say what they are
sure of: text they cannot place is "unknown", which fits any question.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..index import terms

# The index's months, days and number words (re-ranking features), and their short forms.
MONTHS_AND_DAYS = terms.MONTHS_AND_DAYS | frozenset(
    "jan feb mar apr jun jul agu agt ags sep sept okt nov des jum'at ahad".split()
)
# Words that make a span a time or a span of time (a week is both: "seminggu", "pekan lalu").
TIME_WORDS = frozenset(
    """tahun bulan pekan minggu hari malam pagi siang sore subuh dini pukul jam menit detik
    abad dekade windu kemarin besok lusa tadi kini sekarang silam lampau semalam tanggal
    triwulan kuartal semester periode masa era musim wib wita wit
    year years month months week weeks day days night morning afternoon evening hour hours
    minute minutes century decade yesterday today tomorrow tonight ago now quarter season""".split()
)
NUMBER_WORDS = terms.NUMBER_WORDS | frozenset(
    """nol milyar sejuta separuh seperempat puluhan ratusan ribuan jutaan belasan beberapa
    persen zero one two three four five six seven eight nine ten eleven twelve thirteen fifteen
    twenty thirty forty fifty sixty seventy eighty ninety hundred hundreds thousand thousands
    million millions billion billions dozen dozens half several percent""".split()
)
# "se-" + a unit is one of it: seminggu, sebulan, setahun.
ONE_OF = re.compile(r"^se(minggu|pekan|bulan|tahun|hari|jam|malam|abad|dekade|kali|ekor|orang)$")
# Words before a name that make it a place.
PLACE_WORDS = frozenset(
    """kota kabupaten provinsi desa kelurahan kecamatan kampung dusun jalan jl pulau gunung
    pegunungan sungai danau laut selat teluk pantai bandara pelabuhan stasiun terminal
    stadion gedung istana wilayah daerah kawasan benua negara ibu kota
    city province village street road island mountain mountains river lake sea coast airport
    port station stadium palace region county district country""".split()
)
# Titles and roles that make the name after them a person, and words that make an organisation.
PERSON_WORDS = frozenset(
    """presiden wakil menteri pemimpin gubernur bupati walikota wali ketua direktur kepala
    pelatih kapten jenderal kolonel komandan raja ratu pangeran perdana sekretaris jubir
    juru bicara duta dubes hakim jaksa dokter dr prof profesor pak bu bapak ibu tuan nyonya
    haji kiai ustaz pendeta paus uskup imam ceo pendiri pemilik penulis wartawan peneliti
    pemain penyanyi aktor aktris calon kandidat anggota analis pakar camat lurah kades
    president vice minister leader governor mayor chairman chairwoman director head coach
    captain general king queen prince secretary spokesman spokeswoman judge doctor mr mrs ms
    professor researcher analyst candidate player""".split()
)
ORGANISATION_WORDS = frozenset(
    """partai kementerian pemerintah badan lembaga komisi dewan majelis perserikatan polisi
    polri tni universitas sekolah rumah sakit perusahaan pt tbk bank tim klub asosiasi
    federasi organisasi media kantor berita serikat politbiro parlemen kongres senat
    party ministry government agency committee commission council assembly police army
    university school hospital company bank team club association federation organization
    organisation media parliament congress senate""".split()
)
# Countries, as the place after a comma ("Vladivostok, Rusia") or a name of their own.
COUNTRIES = frozenset(
    """indonesia malaysia singapura thailand vietnam filipina myanmar kamboja laos brunei
    timor leste tiongkok china cina jepang korea utara selatan taiwan mongolia india pakistan
    bangladesh nepal afganistan afghanistan iran irak iraq suriah syria turki arab saudi yaman
    yordania lebanon israel palestina mesir libya tunisia aljazair maroko sudan ethiopia kenya
    nigeria ghana afrika rusia russia ukraina ukraine belarus polandia poland jerman germany
    prancis perancis france inggris britania raya italia italy spanyol spain portugal belanda
    netherlands belgia swiss austria swedia sweden norwegia norway denmark finlandia yunani
    greece kanada canada amerika serikat as meksiko mexico brasil brazil argentina chili
    kolombia peru venezuela kuba australia selandia baru papua nugini fiji
    jakarta surabaya bandung medan semarang makassar palembang denpasar yogyakarta
    balikpapan samarinda pontianak manado kupang ambon jayapura aceh sumatra jawa kalimantan
    sulawesi bali papua maluku banten lampung riau jambi bengkulu gorontalo
    moskow moscow kyiv kiev beijing tokyo seoul pyongyang washington london paris berlin""".split()
)
# 22/9, 8/ 9, 2/10/2023, 14.30, 1998: FacQA's text has spaces around some slashes.
DATE = re.compile(
    r"\b\d{1,2} ?/ ?\d{1,2}(?: ?/ ?\d{2,4})?\b|\b\d{1,2}[.:]\d{2}\b|\b(?:1[5-9]|20)\d\d\b"
)
# Ordinals: kedua, ketiga, kedelapan, pertama; second, third.
ORDINAL = re.compile(
    r"^(ke(dua|tiga|empat|lima|enam|tujuh|delapan|sembilan|sepuluh|sebelas|\d+)\w*|pertama|"
    r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\d+(st|nd|rd|th))$"
)
DIGIT = re.compile(r"\d")
WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
ACRONYM = re.compile(r"^[A-Z]{2,}$")


@dataclass(frozen=True)
class Kinds:
    """What a text holds: a time, a number, a place, a person or organisation (any of them)."""

    time: bool
    number: bool
    place: bool
    person: bool

    @property
    def plain(self) -> bool:
        """Only times and numbers: no name of any kind."""
        return not (self.place or self.person)


def _is_verb(word: str) -> bool:
    """A lowercase word with a verb's prefix (me-, ber-, di-): "berjabat", "mengunjungi"."""
    return word.islower() and len(word) > 5 and word.startswith(("me", "ber", "di"))


@functools.cache
def _dictionary() -> frozenset[str]:
    """Sastrawi's Indonesian root words."""
    from Sastrawi.Stemmer.StemmerFactory import StemmerFactory

    return frozenset(StemmerFactory().get_words())


def _common(word: str) -> bool:
    """A capitalised word that is a common one ("Pertahanan", "Rusia"), not a personal name."""
    lower = word.casefold()
    if lower in COUNTRIES or lower in PERSON_WORDS or lower in ORGANISATION_WORDS:
        return True
    return lower in _dictionary() or _affixed(lower)


def looks_like_name(word: str, first: bool = False) -> bool:
    """A capitalised word that names someone or something; the `first` word of a sentence is
    capitalised anyway, so there it must also be no common word ("Kembali kapan?")."""
    return is_name(word) and not (first and _common(word))


def is_derived(word: str) -> bool:
    """A word made from a root by a prefix or -an ("perseroan", "pertandingan"), not a root
    itself ("bersih")."""
    return _affixed(word.casefold())


def _affixed(lower: str) -> bool:
    """A word with a derivational prefix or -an that the stemmer takes off ("pertahanan" ->
    "tahan"): a common word. (A bare -i is no sign: "Hadi" is a name.)"""
    from ..index.keyword import _stem

    marked = lower.startswith(("me", "ber", "di", "ter", "pe", "ke", "se")) or lower.endswith("an")
    return marked and _stem(lower) != lower


def person_name(text: str) -> str:
    """The personal name at the end of a titled one: "Menteri Pertahanan Rusia Sergei Shoigu"
    -> "Sergei Shoigu", "Pelatih Bintang Timur, Sutrisno Hadi" -> "Sutrisno Hadi"; the text
    itself when no name follows a title."""
    tail = text.rsplit(",", 1)[-1].strip() if "," in text else text
    found = words(tail)
    name: list[str] = []
    for word in reversed(found):
        lower = word.casefold()
        if not is_name(word) or lower in COUNTRIES | PERSON_WORDS | ORGANISATION_WORDS:
            break
        if _affixed(lower):
            break
        name.insert(0, word)
    if name and len(name) < len(found) + (1 if "," in text else 0):
        return " ".join(name)
    return text


def titled_span_end(text: str, start: int, end: int) -> int:
    """Where a who-question's span that is only a title ("Menteri Pertahanan Rusia") ends once
    the name right after it is taken in ("… Sergei Shoigu"); `end` when no name follows."""
    found = words(text[start:end])
    if not found or found[0].casefold() not in PERSON_WORDS:
        return end
    if any(is_name(w) and not _common(w) for w in found[1:]):
        return end  # it holds a name already
    after = re.match(r"[ ,]*((?:[A-Z][\w'’-]*\.? ?){1,4})", text[end : end + 60])
    if not after:
        return end
    name = [w for w in words(after.group(1)) if w.casefold() not in COUNTRIES | PERSON_WORDS]
    if not name or not is_name(name[0]):
        return end
    return end + after.end(1) - (1 if after.group(1).endswith(" ") else 0)


def words(text: str) -> list[str]:
    """The words of a text, as written."""
    return WORD.findall(text)


def is_name(word: str) -> bool:
    """A capitalised word that is not a month or a day."""
    return word[:1].isupper() and word.casefold() not in MONTHS_AND_DAYS


def kinds(text: str, before: str = "") -> Kinds:
    """What the text names; `before` is the text just ahead of it in its passage, where a
    title ("Menteri …") or a place word ("kota …") may stand."""
    found = words(text)
    lower = [w.casefold() for w in found]
    ahead = [w.casefold() for w in words(before)[-2:]]
    time = bool(DATE.search(text)) or any(
        w in MONTHS_AND_DAYS or w in TIME_WORDS or ONE_OF.match(w) for w in lower
    )
    number = bool(DIGIT.search(text)) or any(
        w in NUMBER_WORDS or ONE_OF.match(w) or ORDINAL.match(w) for w in lower
    )
    names = [w for w in found if is_name(w)]
    titled = any(w in PERSON_WORDS or w in ORGANISATION_WORDS for w in lower + ahead[-1:])
    placed = any(w in PLACE_WORDS for w in lower[:1] + ahead[-1:]) or _country_after_comma(text)
    return Kinds(
        time=time,
        number=number,
        place=placed,
        person=titled or (bool(names) and not placed) or any(ACRONYM.match(w) for w in found),
    )


# "Jawa Barat", "Bandung Barat", "Korea Utara": a name ending in a compass point is a region.
COMPASS = frozenset("barat timur utara selatan tengah tenggara daya laut".split())


def is_region(name: str) -> bool:
    """A name that is a country or region: all of it in COUNTRIES, or ending in a compass
    point after a name ("Bandung Barat")."""
    lower = [w.casefold() for w in words(name)]
    if not lower:
        return False
    return all(w in COUNTRIES for w in lower) or (len(lower) > 1 and lower[-1] in COMPASS)


def _country_after_comma(text: str) -> bool:
    """ "Vladivostok, Rusia": a name, a comma, then a country or region."""
    head, comma, tail = text.rpartition(",")
    if not comma or not head.strip():
        return False
    tail_words = [w.casefold() for w in words(tail)]
    return bool(tail_words) and all(w in COUNTRIES for w in tail_words)


def fits(asked: str, text: str, before: str = "") -> bool:
    """Whether a span can answer a question asking for `asked` (a query.TYPES name): a date
    must hold a time, a number a number; a person is not a bare time, number or a place; a
    place is not a bare time or number, nor a titled person. Anything else fits."""
    found = kinds(text, before)
    if asked == "date":
        return found.time
    if asked == "number":
        return found.number
    if asked in ("person", "organisation"):
        # A clause is no one: "Kim Jong Un berjabat tangan dengan …" answers no who-question.
        if any(_is_verb(w) for w in words(text)) or found.place:
            return False
        if asked == "organisation":
            first = words(text)[:1]
            country = all(w.casefold() in COUNTRIES for w in words(text))
            if country or (first and first[0].casefold() in PERSON_WORDS):
                return False
        return found.person or not (found.time or found.number)
    if asked == "place":
        titled = any(w.casefold() in PERSON_WORDS for w in words(text)[:1])
        return not titled and (not found.plain or not (found.time or found.number))
    return True


# What a question's own question word asks for, whatever else it mentions: "Di mana … pada
# tanggal 13 September?" asks for a place. Tried in this order at each word of the question.
TIME_NOUNS = "tanggal|tahun|bulan|hari|pukul|jam|abad"
PLACE_NOUNS = "kota|negara|provinsi|daerah|wilayah|tempat|pulau|desa|kabupaten|kecamatan|benua"
PLACE_NOUNS_EN = "city|country|province|region|place|town|village|state"
PARTY_NOUNS = "partai|klub|tim|perusahaan|lembaga|media|organisasi"
PARTY_NOUNS_EN = "party|club|team|company|organi[sz]ation|media|newspaper|agency"
_ASKS = tuple(
    (kind, re.compile(rf"^(?:{'|'.join(forms)})\b"))
    for kind, forms in (
        (
            "date",
            (
                r"kapan\w*",
                "bilamana",
                "sejak kapan",
                rf"(?:{TIME_NOUNS}) (?:berapa|apa)\w*",
                "when",
                r"(?:(?:on|in) )?(?:what|which) (?:year|date|day|time|month)",
            ),
        ),
        ("number", (r"(?:ke ?)?berapa\w*", "how (?:many|much|long|old|far)")),
        (
            "organisation",
            (rf"(?:{PARTY_NOUNS}) (?:mana|apa)\w*", rf"(?:what|which) (?:{PARTY_NOUNS_EN})"),
        ),
        ("person", (r"siapa\w*", "who|whom|whose")),
        (
            "place",
            (
                r"(?:di|ke|dari) ?mana\w*",
                rf"(?:{PLACE_NOUNS}) (?:mana|apa)\w*",
                "where",
                rf"(?:(?:in|to|from) )?which (?:{PLACE_NOUNS_EN})",
            ),
        ),
        ("other", (r"apa\w*", r"bagaimana\w*", "mengapa|kenapa", r"mana\w*", "what|which|why|how")),
    )
)


def asked_kind(question: str) -> str:
    """date, number, person, place or other: what the question word asks for (query.TYPES)."""
    lower = [w.casefold() for w in words(question)]
    for i in range(len(lower)):
        # A noun before "mana"/"apa"/"berapa" belongs to the question word: "kota mana".
        rest = " ".join(lower[i : i + 4])
        for kind, pattern in _ASKS:
            if pattern.match(rest):
                return kind
    return "other"
