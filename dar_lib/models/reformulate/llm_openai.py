"""The ``openai:`` reformulator backend: an OpenAI-compatible chat-completions endpoint over HTTP."""

from __future__ import annotations

import logging
import os
import re
import time

from dar_lib.errors import EndpointError
from dar_lib.models.reformulate.chat_protocol import ChatReformulator
from dar_lib.redact import redact

log = logging.getLogger(__name__)


class OpenAIReformulator(ChatReformulator):
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, Azure, vLLM, llama.cpp server, ...).

    The key comes from the environment (``$OPENAI_API_KEY``, as OpenAI-compatible clients expect),
    sent as a bearer token. A base URL may carry a query (``?api-version=...``, kept on every
    request) and userinfo (``https://user:KEY@host``, sent as HTTP basic auth, never as part of
    the URL); either way the id, fingerprint, logs and errors show it redacted
    (:func:`dar_lib.redact.redact`), so a CSV, record or status page never holds the key.

    Each request has a connect and a read timeout (``timeout``); timeouts, refused connections and
    HTTP 5xx/429 are retried with exponential backoff up to ``max_retries`` times, and the whole
    call (retries and waits included) ends by ``deadline`` whatever the server does: a server that
    trickles its reply a byte at a time never trips a per-read timeout, so each request runs in a
    worker thread that the call stops waiting for at the deadline; the worker then hangs up at
    its next byte. Anything else that is not a usable
    answer (another HTTP 4xx, a body that is not chat-completions JSON, e.g. an HTML page, empty
    or null content) raises :class:`~dar_lib.errors.EndpointError`: one line naming the endpoint.

    Args:
        model: model name sent in the request.
        base_url: server root, e.g. ``https://api.openai.com`` or ``http://localhost:8000/v1``
            (``http`` or ``https``; a query string is kept).
        api_key: bearer token; default ``$OPENAI_API_KEY`` (optional for local servers).
        timeout: seconds to connect, and seconds of silence while reading, per request.
        max_retries: retries after the first attempt.
        backoff: first wait in seconds; doubles each retry.
        deadline: seconds for the whole call, retries and waits included (default
            ``2 * timeout``: a silent endpoint with ``timeout=3`` fails in about 6 s).
        temperature: sampling temperature (0 = greedy where the server honours it).
        max_tokens: generation budget per reply.
        fallback: on a reply still unusable after one retry, return a recorded fallback instead of
            raising :class:`ReformulationError` (default ``False``; see :class:`~.chat_protocol.ChatReformulator`).

    Raises:
        ValueError: a base URL that is not ``http(s)://host...`` (named, redacted), or a
            non-positive ``timeout`` / ``deadline``.
    """

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", *, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, deadline: float | None = None,
                 temperature: float = 0.0, max_tokens: int = 256, fallback: bool = False):
        from urllib.parse import urlsplit, urlunsplit

        self.model = model
        parts = urlsplit(str(base_url).strip())
        try:
            port = parts.port  # urllib refuses a non-numeric port without naming the URL
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ValueError(f"openai base URL {redact(str(base_url))!r}: expected http(s)://host[:port][/path][?query]")
        path = parts.path.rstrip("/")
        if not path.endswith("/chat/completions"):
            path += "/chat/completions" if path.endswith("/v1") else "/v1/chat/completions"
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = host + (f":{port}" if port else "")
        #: The request URL (no userinfo; the query kept); shown only through :func:`redact`.
        self.url = urlunsplit((parts.scheme, netloc, path, parts.query, ""))
        self.auth = (parts.username or "", parts.password or "") if parts.username or parts.password else None
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.deadline = float(deadline) if deadline is not None else 2 * self.timeout
        if not (self.timeout > 0 and self.deadline > 0):
            raise ValueError(f"openai reformulator: timeout ({timeout}) and deadline ({deadline}) must be > 0 s")
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.fallback = bool(fallback)
        root = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))
        self.id = redact(f"openai:{model}@{root}")
        shown = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        #: The request URL as every message shows it (userinfo kept, credentials redacted).
        self.endpoint = redact(shown)
        if self.endpoint != shown:
            log.warning("%s: the base URL carries a credential; it is redacted in every output, but prefer "
                        "$OPENAI_API_KEY", self.endpoint)

    def settings(self) -> dict:
        """``temperature`` and ``max_tokens`` as sent in each request (part of the fingerprint)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def _error(self, what: str) -> EndpointError:
        return EndpointError(f"LLM endpoint {self.endpoint}: {redact(' '.join(what.split()))}")

    def chat(self, messages):
        """POST ``messages`` to the endpoint and return ``choices[0].message.content``.

        Sends ``model``, ``temperature`` and ``max_tokens``, with a bearer token when ``api_key`` is
        set. Timeouts, refused connections, HTTP 5xx and 429 are retried after ``backoff * 2**(n-1)``
        seconds, up to ``max_retries`` times and never past ``deadline`` seconds after the call began.

        Args:
            messages: OpenAI-style ``{"role", "content"}`` messages.

        Returns:
            The reply text, unparsed.

        Raises:
            EndpointError: another HTTP 4xx, a body that is not chat-completions JSON, empty or null
                content, or no answer within ``max_retries + 1`` attempts or ``deadline`` seconds
                (one line naming the endpoint, credentials redacted).
        """
        import requests

        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        end = time.monotonic() + self.deadline
        last, attempts = "", 0
        for attempt in range(self.max_retries + 1):
            if attempt:
                wait = self.backoff * 2 ** (attempt - 1)
                if time.monotonic() + wait >= end:
                    break
                time.sleep(wait)
            left = end - time.monotonic()
            if left <= 0:
                break
            attempts += 1
            per = min(self.timeout, left)
            try:
                resp = _post_by(end, self.url, json=body, headers=headers, auth=self.auth, timeout=(per, per))
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = f"{type(exc).__name__}: {_first_reason(exc)}"
                log.warning("%s: attempt %d failed (%s)", self.endpoint, attempt + 1, last)
                continue
            except TimeoutError:
                last = "the reply was still arriving at the deadline"
                log.warning("%s: attempt %d failed (%s)", self.endpoint, attempt + 1, last)
                break
            if resp.status_code >= 500 or resp.status_code == 429:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                log.warning("%s: attempt %d failed (%s)", self.endpoint, attempt + 1, " ".join(last.split()))
                continue
            if resp.status_code >= 400:
                raise self._error(f"refused the request: HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                kind = resp.headers.get("Content-Type", "no content type")
                raise self._error(f"returned a body that is not chat-completions JSON ({kind}; "
                                  f"{type(exc).__name__}): {resp.text[:200]!r}") from None
            if not isinstance(content, str) or not content.strip():
                raise self._error(f"returned {'null' if content is None else 'empty'} content "
                                  f"(choices[0].message.content = {content!r})")
            return content
        raise self._error(f"no answer after {attempts} attempt{'s' if attempts != 1 else ''} "
                          f"(max_retries={self.max_retries}, deadline {self.deadline:g} s); "
                          f"last error: {last or 'none'}")


class _Reply:
    """What :func:`_post_by` hands back: status, headers and the whole body (as ``requests.Response`` has them)."""

    def __init__(self, status_code: int, headers, content: bytes, encoding: str | None):
        self.status_code, self.headers, self.content = status_code, headers, content
        self.text = content.decode(encoding or "utf-8", errors="replace")

    def json(self):
        import json

        return json.loads(self.content)


def _post_by(end: float, url: str, **kwargs) -> _Reply:
    """``requests.post(url, **kwargs)`` that returns by ``end`` (``time.monotonic()``) or raises ``TimeoutError``.

    The request runs in a daemon thread and streams its body in small pieces; at the deadline the
    caller stops waiting and the thread closes the connection at its next piece (or when its
    per-read timeout fires), so a server that trickles forever is hung up on, not read to the end.
    Errors of ``requests`` are raised in the caller as they were raised in the thread.
    """
    import threading

    import requests

    box: dict = {}
    stop = threading.Event()

    def work():
        try:
            with requests.post(url, stream=True, **kwargs) as resp:
                chunks = []
                while not stop.is_set():  # else the caller gave up: leaving the block closes the connection
                    chunk = resp.raw.read1(8192, decode_content=True)  # what has arrived, not 8192 bytes
                    if not chunk:
                        break
                    chunks.append(chunk)
                if stop.is_set():
                    return
                box["reply"] = _Reply(resp.status_code, resp.headers, b"".join(chunks), resp.encoding)
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=work, name="openai-request", daemon=True)
    worker.start()
    worker.join(max(0.0, end - time.monotonic()))
    if worker.is_alive():
        stop.set()
        raise TimeoutError("deadline")
    if "error" in box:
        raise box["error"]
    return box["reply"]


def _first_reason(exc: BaseException) -> str:
    """The innermost one-line reason of a requests error (e.g. ``[Errno 111] Connection refused``)."""
    text = " ".join(str(exc).split())
    found = re.findall(r"\[Errno -?\d+\][^')\]]*|timed out|Read timed out", text)
    return found[-1].strip() if found else text[:200]
