"""A fake Telegram Bot API server on 127.0.0.1: real HTTP, injected updates, recorded requests."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

TOKEN = "123456:TEST-token-never-logged-0123456789A"  # the shape BotFather gives
BOT_USER = {
    "id": 4242,
    "is_bot": True,
    "first_name": "Tanya",
    "username": "tanya_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
# Parameters that PTB sends as JSON text inside the form.
JSON_PARAMS = {
    "reply_parameters",
    "commands",
    "allowed_updates",
    "link_preview_options",
    "scope",
    "reply_markup",
    "results",
    "button",
}


# The tags Telegram's HTML parse mode knows; anything else is "can't parse entities".
TELEGRAM_TAGS = frozenset(
    "b strong i em u ins s strike del a code pre blockquote tg-spoiler span tg-emoji".split()
)
MESSAGE_LIMIT = 4096
_BARE_AMP = re.compile(r"&(?!(?:amp|lt|gt|quot|#\d+|#x[0-9a-fA-F]+);)")


class _TagChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in TELEGRAM_TAGS:
            self.errors.append(f"unsupported tag <{tag}>")
        if tag == "a" and not dict(attrs).get("href"):
            self.errors.append("<a> without href")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> does not close {self.stack[-1:] or 'anything'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def html_errors(text: str) -> list[str]:
    """Why Telegram would refuse text in HTML parse mode (empty list: it is fine)."""
    checker = _TagChecker()
    checker.feed(text)
    checker.close()
    errors = list(checker.errors)
    if checker.stack:
        errors.append(f"unclosed tags {checker.stack}")
    if _BARE_AMP.search(text):
        errors.append("a bare & (not an entity)")
    if re.search(r"<(?![a-zA-Z/])", text):
        errors.append("a bare <")
    visible = "".join(checker.text)
    if not visible.strip():
        errors.append("message text is empty")
    if utf16_len(visible) > MESSAGE_LIMIT:
        errors.append(f"message is too long ({utf16_len(visible)} > {MESSAGE_LIMIT})")
    return errors


@dataclass(frozen=True)
class Request:
    """One call the bot made: method, decoded parameters, the HTTP status it got, when."""

    method: str
    params: dict[str, Any]
    status: int
    at: float


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 resets connections when a whole load test connects at once.
    request_queue_size = 1024
    daemon_threads = True


class _BadRequest(Exception):
    pass


@dataclass
class Fault:
    status: int
    retry_after: int | None = None


@dataclass
class _State:
    updates: list[dict] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    lasting_faults: dict[str, Fault] = field(default_factory=dict)
    revoked: bool = False
    chats: dict[int, dict] = field(default_factory=dict)
    injected_at: dict[tuple[int, int], float] = field(default_factory=dict)
    next_update: int = 1
    next_message: int = 1000
    stopping: bool = False


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def entities_of(text: str) -> list[dict]:
    """The entities Telegram would attach: a leading /command and @mentions."""
    entities = []
    words, pos = [], 0
    for word in text.split(" "):
        words.append((pos, word))
        pos += len(word) + 1
    for start, word in words:
        offset = utf16_len(text[:start])
        if start == 0 and word.startswith("/") and len(word) > 1:
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(word)})
        elif word.startswith("@") and len(word) > 1:
            name = word.rstrip("?,.!:")
            entities.append({"type": "mention", "offset": offset, "length": utf16_len(name)})
    return entities


class FakeTelegram:
    """The Bot API methods the bot calls, served from a thread; tests inject and inspect."""

    def __init__(self, token: str = TOKEN, max_poll_seconds: float = 0.2):
        self.token = token
        self.max_poll_seconds = max_poll_seconds
        self._state = _State()
        self._cond = threading.Condition()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    # Life cycle

    def start(self) -> FakeTelegram:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._state.stopping = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # What tests do

    def inject(self, update: dict) -> int:
        """Queue an update (its update_id is assigned here); returns the update_id."""
        with self._cond:
            update = {**update, "update_id": self._state.next_update}
            self._state.next_update += 1
            self._state.updates.append(update)
            message = update.get("message")
            if message:
                key = (message["chat"]["id"], message["message_id"])
                self._state.injected_at[key] = time.perf_counter()
            self._cond.notify_all()
            return update["update_id"]

    def message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str = "private",
        reply_to: dict | None = None,
        language_code: str | None = None,
    ) -> dict:
        """Inject a text message from a user (whose Telegram app speaks language_code, when
        given); returns the message as sent."""
        user_id = user_id if user_id is not None else chat_id
        if chat_type == "private":
            chat = {"id": chat_id, "type": "private", "first_name": f"User{user_id}"}
        else:
            chat = {"id": chat_id, "type": chat_type, "title": f"Group {chat_id}"}
        with self._cond:
            self._state.chats[chat_id] = chat
            message_id = self._new_message_id()
        sender = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        if language_code is not None:
            sender["language_code"] = language_code
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": sender,
            "text": text,
        }
        entities = entities_of(text)
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        self.inject({"message": message})
        return message

    def press(
        self, sent: dict, data: str, *, user_id: int, language_code: str | None = None
    ) -> str:
        """Inject a tap on an inline keyboard button with callback data under a message the
        bot sent (sendMessage's parameters); returns the callback query's id."""
        with self._cond:
            query_id = str(self._new_message_id())
        sender = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        if language_code is not None:
            sender["language_code"] = language_code
        query = {
            "id": query_id,
            "from": sender,
            "message": self.sent_message(sent),
            "chat_instance": "1",
            "data": data,
        }
        self.inject({"callback_query": query})
        return query_id

    def inline_query(self, user_id: int, text: str, *, language_code: str | None = None) -> str:
        """Inject an inline query (@bot text typed in any chat); returns its id."""
        with self._cond:
            query_id = str(self._new_message_id())
        sender = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        if language_code is not None:
            sender["language_code"] = language_code
        query = {"id": query_id, "from": sender, "query": text, "offset": ""}
        self.inject({"inline_query": query})
        return query_id

    def answered(self, method: str, query_id: str) -> list[dict]:
        """The successful answer<method> calls for one query (answerCallbackQuery,
        answerInlineQuery)."""
        key = "callback_query_id" if method == "answerCallbackQuery" else "inline_query_id"
        return [
            r.params
            for r in self.calls(method)
            if r.status == 200 and str(r.params.get(key)) == query_id
        ]

    def fail_next(self, method: str, status: int, retry_after: int | None = None) -> None:
        """Make the next call of method fail with this HTTP status (429 with retry_after)."""
        with self._cond:
            self._state.faults.setdefault(method, []).append(Fault(status, retry_after))

    def fail_always(self, method: str, status: int) -> None:
        """Make every call of method from now on fail with this HTTP status."""
        with self._cond:
            self._state.lasting_faults[method] = Fault(status)

    def revoke(self) -> None:
        """Revoke the token: every call from now on gets 401 Unauthorized, as after /revoke."""
        with self._cond:
            self._state.revoked = True

    @property
    def requests(self) -> list[Request]:
        with self._cond:
            return list(self._state.requests)

    def calls(self, method: str) -> list[Request]:
        """Every call of method, failed ones included."""
        return [r for r in self.requests if r.method == method]

    def sent(self, chat_id: int | None = None) -> list[dict]:
        """Parameters of the sendMessage calls that succeeded, optionally in one chat."""
        return [
            r.params
            for r in self.calls("sendMessage")
            if r.status == 200 and (chat_id is None or int(r.params["chat_id"]) == chat_id)
        ]

    def replies_to(self, message: dict) -> list[dict]:
        """The messages sent in answer to message."""
        return [
            p
            for p in self.sent(message["chat"]["id"])
            if p.get("reply_parameters", {}).get("message_id") == message["message_id"]
        ]

    def latency(self, chat_id: int, message_id: int) -> float | None:
        """Seconds from injecting a message to the first reply to it arriving here."""
        start = self._state.injected_at.get((chat_id, message_id))
        for r in self.calls("sendMessage"):
            target = r.params.get("reply_parameters", {}).get("message_id")
            if r.status == 200 and int(r.params["chat_id"]) == chat_id and target == message_id:
                return r.at - start if start is not None else None
        return None

    def sent_message(self, params: dict) -> dict:
        """A sent message as Telegram would return it (for a user replying to the bot)."""
        return params["_returned"]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until predicate() is truthy and return it; fail the test after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s; requests: {self.summary()}")
            time.sleep(0.01)

    def summary(self) -> list[tuple[str, int]]:
        return [(r.method, r.status) for r in self.requests]

    def pending_updates(self) -> int:
        with self._cond:
            return len(self._state.updates)

    # Server side

    def _new_message_id(self) -> int:
        self._state.next_message += 1
        return self._state.next_message

    def _handle(self, path: str, params: dict[str, Any]) -> tuple[int, dict]:
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix) or self._state.revoked:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = path[len(prefix) :]
        with self._cond:
            faults = self._state.faults.get(method)
            fault = faults.pop(0) if faults else self._state.lasting_faults.get(method)
        if fault is not None:
            description = {401: "Unauthorized", 403: "Forbidden: bot was blocked by the user"}
            body: dict = {
                "ok": False,
                "error_code": fault.status,
                "description": description.get(fault.status, "Fault"),
            }
            if fault.retry_after is not None:
                body["description"] = f"Too Many Requests: retry after {fault.retry_after}"
                body["parameters"] = {"retry_after": fault.retry_after}
            return fault.status, body
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        try:
            return 200, {"ok": True, "result": handler(params)}
        except _BadRequest as exc:
            return 400, {"ok": False, "error_code": 400, "description": str(exc)}

    def _api_getMe(self, params: dict) -> dict:
        return BOT_USER

    def _api_deleteWebhook(self, params: dict) -> bool:
        return True

    def _api_setWebhook(self, params: dict) -> bool:
        return True

    def _api_setMyCommands(self, params: dict) -> bool:
        return True

    def _api_sendChatAction(self, params: dict) -> bool:
        return True

    def _api_answerCallbackQuery(self, params: dict) -> bool:
        if len(params.get("text") or "") > 200:
            raise _BadRequest("Bad Request: MESSAGE_TOO_LONG")
        return True

    def _api_answerInlineQuery(self, params: dict) -> bool:
        results = params.get("results") or []
        if len(results) > 50:
            raise _BadRequest("Bad Request: RESULTS_TOO_MUCH")
        for result in results:
            content = result.get("input_message_content") or {}
            text = content.get("message_text", "")
            errors = html_errors(text) if content.get("parse_mode") == "HTML" else []
            if errors or not 1 <= len(result.get("id", "")) <= 64:
                raise _BadRequest(f"Bad Request: RESULT_INVALID ({'; '.join(errors)})")
        return True

    def _api_sendMessage(self, params: dict) -> dict:
        chat_id = int(params["chat_id"])
        text = params.get("text", "")
        if params.get("parse_mode") == "HTML":
            errors = html_errors(text)
            if errors:
                raise _BadRequest(f"Bad Request: can't parse entities: {'; '.join(errors)}")
        elif not text.strip() or utf16_len(text) > MESSAGE_LIMIT:
            raise _BadRequest("Bad Request: message text is empty or too long")
        with self._cond:
            chat = self._state.chats.get(chat_id, {"id": chat_id, "type": "private"})
            message_id = self._new_message_id()
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": BOT_USER,
            "text": params.get("text", ""),
        }
        params["_returned"] = message
        return message

    def _api_getUpdates(self, params: dict) -> list[dict]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = min(float(params.get("timeout") or 0), self.max_poll_seconds)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                # Like Telegram: asking from an offset confirms every update before it.
                self._state.updates = [u for u in self._state.updates if u["update_id"] >= offset]
                if self._state.updates or self._state.stopping:
                    return self._state.updates[:limit]
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)

    def _record(self, method: str, params: dict, status: int) -> None:
        with self._cond:
            self._state.requests.append(Request(method, params, status, time.perf_counter()))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: send each at once.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8")
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params = json.loads(raw or "{}")
                else:
                    params = dict(parse_qsl(raw, keep_blank_values=True))
                for key in JSON_PARAMS & params.keys():
                    if isinstance(params[key], str):
                        params[key] = json.loads(params[key])
                path = urlparse(self.path).path
                status, body = fake._handle(path, params)
                method = path.rsplit("/", 1)[-1]
                fake._record(method, params, status)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the bot gave up on a long poll while shutting down

            do_GET = do_POST  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet: tests read the recorded requests instead

        return Handler


class AppThread:
    """Runs a python-telegram-bot Application's blocking run_* call in a thread of its own."""

    def __init__(self, app: Any, run: Callable[[], None]):
        self.app = app
        self._run = run
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def __enter__(self) -> AppThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the Application the way a signal would, and wait for its shutdown."""
        if self._thread.is_alive() and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.app.stop_running)
            except RuntimeError:
                pass  # the loop already closed on its own
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the bot did not stop within {timeout} s")
        if self.error is not None:
            raise self.error
