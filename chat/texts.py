"""Every fixed text of the bot and the console, one table per language.

A third language is one more Texts value in TEXTS: the command menu gets it at once, and
commands follow it for users whose Telegram language it is. (Questions are told apart as
English or Indonesian only, by retrieval.answering.query.question_language.)
"""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.answering.query import question_language
from retrieval.errors import QuestionError

# Commands of users whose Telegram language has no table, and of the console, under `auto`.
DEFAULT_LANGUAGE = "id"


@dataclass(frozen=True)
class Texts:
    """The fixed texts in one language (HTML where a field says so, else plain text)."""

    language: str
    # Answers, in the console and in Telegram (HTML).
    decline: str
    closest: str
    tg_decline: str
    tg_closest: str  # HTML
    # A passage about the question in which no answer is certain (console; Telegram, HTML).
    passage: str
    tg_passage: str  # HTML
    # Before a follow-up's reply: how it was read ({question}: the question as read).
    read_as: str
    paragraph: str
    photo_caption: str
    # Month names in source lines' dates ("22 Sep 2023"), January first.
    months: tuple[str, ...]
    # Lists of articles ({n}: how many).
    articles_one: str
    articles_many: str
    no_articles: str
    and_more: str
    # Questions that cannot be asked, by QuestionError.kind ({n}: characters, {most}: the limit).
    question_empty: str
    question_no_words: str
    question_too_long: str
    # The console: its commands, and what a line that looks like no command of it gets
    # ({command}: the word typed).
    console_help: str
    unknown_command: str
    # Telegram.
    commands: tuple[tuple[str, str], ...]
    start: str
    help: str  # HTML
    ask_usage: str  # HTML
    refusal: str
    slow_down: str
    apology: str
    # Telegram, for admins ({title}, {url}, {reason}, counts).
    admin_only: str
    add_usage: str  # HTML
    added: str
    updated: str
    unchanged: str
    add_failed: str
    busy: str
    no_feeds: str
    refreshed: str
    refresh_failed: str
    skip_reasons: tuple[tuple[str, str], ...]
    # Telegram: /forget, the feedback buttons, inline mode.
    forgotten: str
    vote_saved: str
    vote_changed: str
    vote_unavailable: str
    inline_answer: str
    inline_passage: str
    inline_declined: str

    def articles(self, n: int) -> str:
        """'1 article indexed', '3 articles indexed'."""
        return (self.articles_one if n == 1 else self.articles_many).format(n=n)

    def reason(self, kind: str, detail: str) -> str:
        """Why an article was skipped, in this language (the detail as it came)."""
        known = dict(self.skip_reasons)
        return known[kind].format(detail=detail) if kind in known else detail

    def cannot_ask(self, error: QuestionError) -> str:
        """Why a question cannot be asked, by the error's kind, in this language."""
        if error.kind == "too_long":
            return self.question_too_long.format(n=error.length, most=error.most)
        known = {"empty": self.question_empty, "no_words": self.question_no_words}
        return known.get(error.kind, str(error))


ENGLISH = Texts(
    language="en",
    decline="The articles do not seem to cover this question.",
    closest="Closest passage (not an answer):",
    tg_decline="Sorry, the articles do not seem to cover this question.",
    tg_closest="The closest passage I found (<i>not an answer</i>):",
    passage="This passage is about the question, but the exact answer was not found in it:",
    read_as="(read as: {question})",
    tg_passage=(
        "This passage is about the question, but the exact answer was <i>not found</i> in it:"
    ),
    paragraph="paragraph",
    photo_caption="photo caption",
    months=tuple("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()),
    articles_one="{n} article indexed",
    articles_many="{n} articles indexed",
    no_articles="No articles are indexed yet.",
    and_more="… and {n} more.",
    question_empty="the question is empty: type a question about the articles",
    question_no_words="the question has no words in it: type a question about the articles",
    question_too_long=(
        "the question is too long ({n} characters); at most {most} characters, please"
    ),
    console_help=(
        "Ask a question about the articles; a follow-up is read with your earlier questions.\n"
        "Commands:\n"
        "  /sources            the indexed articles\n"
        "  /help               this list\n"
        "  :q, exit, quit      leave (Ctrl-D too)"
    ),
    unknown_command="unknown command {command}, see /help",
    commands=(
        ("start", "What this bot does and which articles it knows"),
        ("help", "How to ask questions"),
        ("sources", "The indexed articles"),
        ("ask", "Ask a question (in groups): /ask your question"),
        ("forget", "Forget this chat's earlier questions"),
    ),
    start=(
        "Hello! Ask me a question about the news articles I know, and I answer with the "
        "exact passages that answer it, each with its source. Nothing is made up: every "
        "answer is a quote."
    ),
    help=(
        "<b>How to ask</b>\n"
        "In a private chat, just send your question.\n"
        "In a group, use <code>/ask your question</code>, mention me, or reply to one of my "
        "messages.\n"
        "A follow-up such as <i>When did that happen?</i> is read together with your chat's "
        "last questions; /forget starts afresh.\n"
        "Under each answer, 👍 or 👎 tells the bot's keeper whether it was right.\n\n"
        "/sources lists the articles I know."
    ),
    ask_usage=("Put your question after the command, for example: <code>/ask Who met whom?</code>"),
    refusal="Sorry, this bot is private and does not answer in this chat.",
    slow_down="You are asking faster than I can keep up. Please wait a minute and ask again.",
    apology="Sorry, something went wrong while answering. Please try again in a moment.",
    admin_only="Sorry, only the bot's administrators can do that.",
    add_usage=(
        "Put the article's address after the command, for example: "
        "<code>/add https://example.org/news/123</code>"
    ),
    added="Added, and it can be asked about now: {title}",
    updated="Updated, and the new text can be asked about now: {title}",
    unchanged="Already known, unchanged: {title}",
    add_failed="Could not add {url}: {reason}.",
    busy="The articles are being updated right now; please try again in a minute.",
    no_feeds=(
        "No feeds are set up (tanya-add --feed URL follows one; or sources.feeds in config.yaml)."
    ),
    refreshed=(
        "Feeds read: {added} added, {updated} updated, {unchanged} unchanged, {skipped} skipped."
    ),
    refresh_failed="Could not read the feeds: {reason}.",
    skip_reasons=(),  # the reasons are written in English
    forgotten="Done: I forgot this chat's earlier questions. The next one starts afresh.",
    vote_saved="Thanks for the feedback.",
    vote_changed="Thanks: your vote is changed.",
    vote_unavailable="Sorry, feedback cannot be saved right now.",
    inline_answer="Answer",
    inline_passage="A passage about it (no exact answer)",
    inline_declined="Not covered by the articles",
)

INDONESIAN = Texts(
    language="id",
    decline="Artikel-artikel ini tampaknya tidak membahas pertanyaan tersebut.",
    closest="Bagian terdekat (bukan jawaban):",
    tg_decline="Maaf, artikel-artikel ini tampaknya tidak membahas pertanyaan tersebut.",
    tg_closest="Bagian terdekat yang saya temukan (<i>bukan jawaban</i>):",
    passage=(
        "Bagian ini membahas pertanyaan tersebut, tetapi jawaban persisnya tidak ditemukan di sini:"
    ),
    read_as="(dibaca sebagai: {question})",
    tg_passage=(
        "Bagian ini membahas pertanyaan tersebut, tetapi jawaban persisnya "
        "<i>tidak ditemukan</i> di sini:"
    ),
    paragraph="paragraf",
    photo_caption="keterangan foto",
    months=tuple("Jan Feb Mar Apr Mei Jun Jul Agu Sep Okt Nov Des".split()),
    articles_one="{n} artikel terindeks",
    articles_many="{n} artikel terindeks",
    no_articles="Belum ada artikel yang terindeks.",
    and_more="… dan {n} lainnya.",
    question_empty="pertanyaannya kosong: tulis pertanyaan tentang artikel",
    question_no_words="pertanyaannya tidak berisi kata: tulis pertanyaan tentang artikel",
    question_too_long=(
        "pertanyaannya terlalu panjang ({n} karakter); paling banyak {most} karakter"
    ),
    console_help=(
        "Ajukan pertanyaan tentang artikel; pertanyaan lanjutan dibaca bersama pertanyaan "
        "sebelumnya.\n"
        "Perintah:\n"
        "  /sources            artikel yang terindeks\n"
        "  /help               daftar ini\n"
        "  :q, exit, quit      keluar (juga Ctrl-D)"
    ),
    unknown_command="perintah {command} tidak dikenal, lihat /help",
    commands=(
        ("start", "Apa yang dilakukan bot ini dan artikel apa yang diketahuinya"),
        ("help", "Cara bertanya"),
        ("sources", "Artikel yang terindeks"),
        ("ask", "Bertanya (di grup): /ask pertanyaan Anda"),
        ("forget", "Lupakan pertanyaan sebelumnya di obrolan ini"),
    ),
    start=(
        "Halo! Tanyakan apa saja tentang artikel berita yang saya ketahui, dan saya menjawab "
        "dengan kutipan persis dari bagian artikel yang menjawabnya, masing-masing dengan "
        "sumbernya. Tidak ada yang dikarang: setiap jawaban adalah kutipan."
    ),
    help=(
        "<b>Cara bertanya</b>\n"
        "Di obrolan pribadi, kirim saja pertanyaan Anda.\n"
        "Di grup, gunakan <code>/ask pertanyaan Anda</code>, sebut nama saya, atau balas "
        "salah satu pesan saya.\n"
        "Pertanyaan lanjutan seperti <i>Kapan itu terjadi?</i> dibaca bersama pertanyaan "
        "terakhir di obrolan ini; /forget memulai dari awal.\n"
        "Di bawah setiap jawaban, 👍 atau 👎 memberi tahu pengelola bot apakah jawabannya "
        "benar.\n\n"
        "/sources menampilkan artikel yang saya ketahui."
    ),
    ask_usage=(
        "Tulis pertanyaan Anda setelah perintah, misalnya: <code>/ask Siapa bertemu siapa?</code>"
    ),
    refusal="Maaf, bot ini bersifat pribadi dan tidak menjawab di obrolan ini.",
    slow_down=(
        "Anda bertanya lebih cepat daripada yang bisa saya layani. Tunggu sebentar, "
        "lalu tanyakan lagi."
    ),
    apology="Maaf, terjadi kesalahan saat menjawab. Silakan coba lagi sebentar lagi.",
    admin_only="Maaf, hanya admin bot yang dapat melakukannya.",
    add_usage=(
        "Tulis alamat artikel setelah perintah, misalnya: "
        "<code>/add https://example.org/berita/123</code>"
    ),
    added="Ditambahkan, dan sudah bisa ditanyakan: {title}",
    updated="Diperbarui, dan teks barunya sudah bisa ditanyakan: {title}",
    unchanged="Sudah ada, tidak berubah: {title}",
    add_failed="Tidak dapat menambahkan {url}: {reason}.",
    busy="Artikel sedang diperbarui; silakan coba lagi sebentar lagi.",
    no_feeds=(
        "Belum ada feed yang diatur (tanya-add --feed URL untuk mengikuti satu; "
        "atau sources.feeds di config.yaml)."
    ),
    refreshed=(
        "Feed dibaca: {added} ditambahkan, {updated} diperbarui, {unchanged} tidak berubah, "
        "{skipped} dilewati."
    ),
    refresh_failed="Tidak dapat membaca feed: {reason}.",
    skip_reasons=(
        ("http", "server menjawab {detail}"),
        ("timeout", "waktu habis ({detail})"),
        ("network", "tidak dapat terhubung ({detail})"),
        ("redirect", "pengalihan berputar-putar ({detail})"),
        ("too_large", "halaman terlalu besar ({detail})"),
        ("not_html", "bukan halaman HTML ({detail})"),
        ("feed", "feed RSS atau Atom, bukan halaman artikel"),
        ("not_feed", "bukan feed RSS atau Atom ({detail})"),
        ("robots", "dilarang oleh robots.txt situs ({detail})"),
        ("not_article", "bukan artikel ({detail})"),
        ("no_text", "tidak ada teks yang bisa diambil ({detail})"),
        ("bad_url", "alamat tidak valid ({detail})"),
        ("private", "alamat jaringan privat tidak diambil ({detail})"),
        ("bad_encoding", "kompresi halaman tidak dapat dibaca ({detail})"),
        ("write", "tidak dapat disimpan ({detail})"),
    ),
    forgotten="Selesai: pertanyaan sebelumnya di obrolan ini saya lupakan. Berikutnya mulai baru.",
    vote_saved="Terima kasih atas masukannya.",
    vote_changed="Terima kasih: pilihan Anda sudah diubah.",
    vote_unavailable="Maaf, masukan tidak dapat disimpan saat ini.",
    inline_answer="Jawaban",
    inline_passage="Bagian yang membahasnya (tanpa jawaban persis)",
    inline_declined="Tidak dibahas dalam artikel",
)

TEXTS: dict[str, Texts] = {t.language: t for t in (INDONESIAN, ENGLISH)}


def for_question(setting: str, question: str) -> Texts:
    """The texts to answer this question with: ui.language, or under auto its language."""
    return TEXTS[question_language(question) if setting == "auto" else setting]


def for_user(setting: str, language_code: str | None) -> Texts:
    """The texts for a command: ui.language, or under auto the user's Telegram language
    when there is a table for it, else Indonesian."""
    if setting != "auto":
        return TEXTS[setting]
    code = (language_code or "").split("-")[0].lower()
    return TEXTS.get(code, TEXTS[DEFAULT_LANGUAGE])
