"""Reformulators: prompt parsing, a tiny chat LM, an OpenAI-compatible server on localhost, replay, cache."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dar_lib.cachekeys import code_fingerprint
from dar_lib.errors import DataError
from dar_lib.models import prompts as P
from dar_lib.models import reformulate as R
from dar_lib.store import ArtefactStore
from dar_lib.testing import UNIT_LLM, chat_lm, make_tokenizer

TURNS = ["a dog on the grass", "what color is it? red", "is it big? yes"]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def test_templates_follow_the_paper():
    r1 = P.r1_messages(TURNS)[-1]["content"]
    assert "- a dog on the grass\n- what color is it? red" in r1
    assert "initial description" in r1 and "pool of candidate images" in r1 and "concise" in r1
    r2 = P.r2_messages("a red dog", 3)[-1]["content"]
    assert "[Adjective] [Primary Subject] in [Setting], [Key Details]. Style: photorealistic." in r2
    assert "3 distinct prompts" in r2 and "exactly 3 lines" in r2


def test_parse_prompts_numbered_bulleted_never_padded():
    text = ("Here are the prompts:\n1. Red dog in a park, grass. Style: photorealistic.\n"
            "2) Big red dog in a garden, sunny. Style: photorealistic.\n\n- A dog in a field. Style: photorealistic.\n"
            "* \"Quoted dog in a yard.\"\nPrompt 5: Fifth dog.")
    got = R.parse_prompts(text)
    assert got == ["Red dog in a park, grass. Style: photorealistic.",
                   "Big red dog in a garden, sunny. Style: photorealistic.",
                   "A dog in a field. Style: photorealistic.", "Quoted dog in a yard.", "Fifth dog."]
    assert R.check_prompts(got, 5) is None
    # Too many, too few or none: reported, never trimmed, cycled or padded.
    assert R.check_prompts(got, 2) == "expected 2 distinct prompts, got 5"
    assert R.parse_prompts("only one") == ["only one"]
    assert R.check_prompts(["only one"], 3) == "expected 3 distinct prompts, got 1"
    assert R.parse_prompts("\n  \n") == [] and R.check_prompts([], 2) == "expected 2 distinct prompts, got 0"
    assert R.clean_query('Query: "a red dog on grass"\nmore') == "a red dog on grass"


def tiny_chat_lm():
    """:data:`dar_lib.testing.UNIT_LLM` over the unit tests' tokenizer, with a plain chat template."""
    tok = make_tokenizer(512)
    tok.chat_template = CHAT_TEMPLATE
    return chat_lm(UNIT_LLM, tok), tok


def test_hf_chat_reformulator_deterministic_validated():
    model, tok = tiny_chat_lm()
    ref = R.HFChatReformulator(model, tok, id="tiny-llama", device="cpu", max_new_tokens=12)
    reply = ref.chat(P.r1_messages(TURNS))
    q1, q2 = ref.rewrite(TURNS), ref.rewrite(TURNS)
    assert q1 == q2 == R.clean_query(reply) and q1  # greedy: same reply; never empty
    # The untrained model answers R2 with one line: an error by default, no padding.
    with pytest.raises(R.ReformulationError, match=r"hf-llm:tiny-llama@unpinned: unusable R2 reply after 1 retry "
                                                   r"\(expected 3 distinct prompts, got 1\)"):
        ref.prompts("a red dog", 3)
    fb = R.HFChatReformulator(model, tok, id="tiny-llama", device="cpu", max_new_tokens=12, fallback=True)
    assert fb.prompts("a red dog", 3) == P.template_prompts("a red dog", 3) and fb.fallbacks == 1
    assert ref.id == "hf-llm:tiny-llama@unpinned"
    code = code_fingerprint(*R.REWRITE_MODULES)
    assert ref.fingerprint() == (f'hf-llm:tiny-llama@unpinned|code-{code}|'
                                 '{"do_sample": false, "max_new_tokens": 12}')


def test_hf_chat_reformulator_from_folder_and_no_template(tmp_path):
    model, tok = tiny_chat_lm()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    from dar_lib.models import load_reformulator

    ref = load_reformulator(f"hf-llm:{tmp_path}", device="cpu", max_new_tokens=12)
    direct = R.HFChatReformulator(model, tok, device="cpu", max_new_tokens=12)
    assert ref.rewrite(TURNS) == direct.rewrite(TURNS)
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        R.HFChatReformulator(model, tok, device="cpu").rewrite(TURNS)


class FakeOpenAI:
    """A chat-completions server on 127.0.0.1:<free port> that plays a script of answers.

    Script items: ``"ok"`` (a canned good answer), ``"sleep"``, ``"bad-json"``, an HTTP status such
    as ``"500"``, or ``{"content": text}`` (exactly that reply). The last item repeats.
    """

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((self.path, dict(self.headers), body))
                kind = owner.script.pop(0) if len(owner.script) > 1 else owner.script[0]
                if isinstance(kind, dict):  # {"content": reply}: answer exactly that text
                    payload = json.dumps({"choices": [{"message": {"content": kind["content"]}}]}).encode()
                    kind, code = "scripted", 200
                if kind == "sleep":
                    time.sleep(0.6)
                    kind = "ok"
                if kind == "ok":
                    user = body["messages"][-1]["content"]
                    text = ("1. Red dog in a park. Style: photorealistic.\n2. Big dog on grass. Style: photorealistic."
                            if "Write" in user and "prompts" in user else "a big red dog on the grass")
                    payload, code = json.dumps({"choices": [{"message": {"content": text}}]}).encode(), 200
                elif kind == "scripted":
                    pass
                elif kind == "bad-json":
                    payload, code = b"{not json", 200
                elif kind == "html":  # a proxy's login or error page
                    payload, code = b"<html>\n<body>Sign in</body>\n</html>", 200
                elif kind == "silent":  # accepts, then says nothing for longer than any test timeout
                    time.sleep(3)
                    return
                elif kind in ("trickle-body", "trickle-head"):  # one byte every 50 ms: no read ever times out
                    owner.trickle(self, kind)
                    return
                else:
                    payload, code = b'{"error": "boom"}', int(kind)
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "text/html" if kind == "html" else "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        #: Trickled replies: bytes sent before the client hung up, and whether it did (set when done).
        self.trickled, self.hung_up, self.trickle_done = 0, False, threading.Event()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def trickle(self, handler, kind: str) -> None:
        """Send a good answer one byte every 50 ms: the body only (``trickle-body``) or the status line and
        headers too (``trickle-head``); stop when the client hangs up (``hung_up``)."""
        payload = json.dumps({"choices": [{"message": {"content": "a red dog " * 40}}]}).encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                "\r\n").encode()
        if kind == "trickle-body":
            handler.wfile.write(head)
            handler.wfile.flush()
        try:
            for byte in (payload if kind == "trickle-body" else head + payload):
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                self.trickled += 1
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            self.hung_up = True
        finally:
            self.trickle_done.set()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _client(url, **kw):
    kw.setdefault("timeout", 2.0)
    return R.OpenAIReformulator("tiny-gpt", url, api_key="sk-test", max_retries=2, backoff=0.01, **kw)


def test_openai_normal_answer():
    with FakeOpenAI(["ok"]) as srv:
        ref = _client(srv.url)
        assert ref.rewrite(TURNS) == "a big red dog on the grass"
        assert ref.prompts("a red dog", 2) == ["Red dog in a park. Style: photorealistic.",
                                               "Big dog on grass. Style: photorealistic."]
        assert len(srv.requests) == 2  # good replies: no retry
        path, headers, body = srv.requests[0]
        assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test"
        assert body["model"] == "tiny-gpt" and body["temperature"] == 0.0
        assert body["messages"][0]["role"] == "system"


def test_openai_timeout_then_success():
    with FakeOpenAI(["sleep", "ok"]) as srv:
        ref = _client(srv.url, timeout=0.2)
        assert ref.rewrite(TURNS) == "a big red dog on the grass"
        assert len(srv.requests) == 2


def test_openai_500_then_success_and_500_forever():
    with FakeOpenAI(["500", "503", "ok"]) as srv:
        assert _client(srv.url).rewrite(TURNS) == "a big red dog on the grass"
        assert len(srv.requests) == 3
    with FakeOpenAI(["500"]) as srv:
        with pytest.raises(RuntimeError, match=r"127\.0\.0\.1.*no answer after 3 attempts.*HTTP 500"):
            _client(srv.url).rewrite(TURNS)
        assert len(srv.requests) == 3


def test_openai_4xx_and_malformed_json():
    with FakeOpenAI(["401"]) as srv:
        with pytest.raises(RuntimeError, match=r"chat/completions: refused the request: HTTP 401"):
            _client(srv.url).rewrite(TURNS)
        assert len(srv.requests) == 1  # a client error is not retried
    with FakeOpenAI(["bad-json"]) as srv:
        with pytest.raises(RuntimeError, match=r"127\.0\.0\.1.*not chat-completions JSON"):
            _client(srv.url).rewrite(TURNS)


def test_openai_connection_refused():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{port}.*ConnectionError"):
        _client(f"http://127.0.0.1:{port}").rewrite(TURNS)


def test_replay_and_identity(tmp_path):
    ref = R.ReplayReformulator({("img/1.jpg", 0): "a dog", ("img/1.jpg", 1): "a red dog"}, id="replay:test")
    assert ref.rewrite(TURNS[:2], ref=("img/1.jpg", 1)) == "a red dog"
    with pytest.raises(ValueError, match="needs ref"):
        ref.rewrite(TURNS)
    with pytest.raises(KeyError, match="img/2.jpg.*round 0"):
        ref.rewrite(TURNS, ref=("img/2.jpg", 0))
    assert ref.prompts("a red dog", 2) == ["a red dog. Style: photorealistic."] * 2
    varied = R.ReplayReformulator({}, vary_prompts=True).prompts("a red dog.", 3)
    assert len(set(varied)) == 3 and all("a red dog" in v for v in varied)

    p = tmp_path / "q.json"
    p.write_text(json.dumps([{"img": "unlabeled2017/1.jpg", "dialog": ["q0", "q1"]}]))
    from dar_lib.models import load_reformulator

    rp = load_reformulator(f"replay:{p}")
    assert rp.rewrite([], ref=("unlabeled2017/1.jpg", 1)) == "q1" and rp.id == "replay:q.json"
    p.write_text(json.dumps([{"img": 3}]))
    with pytest.raises(DataError, match=r"q\.json: record 0"):
        load_reformulator(f"replay:{p}")

    ident = load_reformulator("identity")
    assert ident.rewrite(TURNS) == ", ".join(TURNS)
    assert ident.prompts("x y", 3) == ["x y"] * 3


class CountingReformulator(R.ChatReformulator):
    """Numbered good replies: R1 "reply N", R2 K lines "pN-i" (K read from the request)."""

    def __init__(self):
        self.id = "count"
        self.calls = 0
        self.temperature = 0.0

    def settings(self):
        return {"temperature": self.temperature}

    def chat(self, messages):
        self.calls += 1
        if messages[0]["content"] == P.R2_SYSTEM:
            k = int(messages[-1]["content"].split("Write ", 1)[1].split()[0])
            return "\n".join(f"p{self.calls}-{i}" for i in range(k))
        return f"reply {self.calls}"


def test_cached_reformulator(tmp_path):
    inner = CountingReformulator()
    cached = R.CachedReformulator(inner, ArtefactStore(tmp_path))
    assert cached.rewrite(TURNS) == "reply 1"
    assert cached.rewrite(TURNS, ref=("x", 2)) == "reply 1"  # LLM output does not depend on ref
    assert cached.prompts("q", 2) == ["p2-0", "p2-1"]
    assert cached.prompts("q", 2) == ["p2-0", "p2-1"]
    assert inner.calls == 2 and (cached.hits, cached.misses) == (2, 2)
    inner.temperature = 0.5  # other sampling settings: another key
    assert cached.rewrite(TURNS) == "reply 3"
    # Replay outputs depend on ref, so ref is part of their key.
    rep = R.CachedReformulator(R.ReplayReformulator({("a", 0): "x", ("b", 0): "y"}), ArtefactStore(tmp_path))
    assert rep.rewrite([], ref=("a", 0)) == "x" and rep.rewrite([], ref=("b", 0)) == "y"


def test_gguf_backend_needs_llama_cpp(tmp_path):
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        from dar_lib.errors import MissingDependencyError

        with pytest.raises(MissingDependencyError, match="llama-cpp-python"):
            R.LlamaCppReformulator(tmp_path / "m.gguf")
        pytest.skip("llama_cpp is not installed: only the missing-dependency error is checked")
    with pytest.raises(FileNotFoundError, match="m.gguf"):
        R.LlamaCppReformulator(tmp_path / "m.gguf")


# -- structural parsing, validation, retry, fallback (LLM replies through a local server) -----------

GOOD_Q = "A big red dog on the grass"
THINK_R1 = ("<think>\nThe user wants one query.\nRed was confirmed; big was confirmed.\n</think>\n\n"
            "A big red dog on the grass")
STEPS_R1 = ("1. Summary: The dialogue describes a dog on the grass that is red and big.\n"
            "2. Separation: initial description: a dog on the grass; added details: red, big.\n"
            "3. New query: A big red dog on the grass")
SURE_R1 = "Sure! Here is the query:\nA big red dog on the grass"
THINK_R2 = ("<think>\nI need three prompts...\n</think>\n1. Big red dog on green grass. Style: photorealistic.\n"
            "2. A red dog standing on a lawn. Style: photorealistic.\n3. Large red dog in a grassy field. "
            "Style: photorealistic.")
R2_GOOD = ["Big red dog on green grass. Style: photorealistic.", "A red dog standing on a lawn. Style: photorealistic.",
           "Large red dog in a grassy field. Style: photorealistic."]


@pytest.mark.parametrize("reply, query", [
    (THINK_R1, GOOD_Q),
    (STEPS_R1, GOOD_Q),
    (SURE_R1, GOOD_Q),
    ("1. Summary: a dog. 2. Separation: red, big. 3. New query: A big red dog on the grass", GOOD_Q),  # one line
    ("Sure! Here is the query: \u201cA big red dog on the grass\u201d", GOOD_Q),
    ("```text\nA big red dog on the grass\n```", GOOD_Q),
    ("**Final query:** a big red dog on the grass.", "a big red dog on the grass."),
    ("Query:\n\"a big red dog\"\n\nThis query keeps the confirmed details.", "a big red dog"),
    ("Here is my reasoning.\n</think>\nA big red dog on the grass", GOOD_Q),  # lone closing tag
    ("A big red dog on the grass\n<think>let me double-check", GOOD_Q),  # unclosed reasoning
    ("First line about the dialogue.\nA big red dog on the grass\n\nI hope this helps!", GOOD_Q),  # last line
    ("<think>\nforever", ""),
    ("Sure! Here is the query:", ""),
])
def test_clean_query_structural(reply, query):
    assert R.clean_query(reply) == query
    assert (R.check_query(query) is None) == bool(query)


def test_check_query_rejects_echoes_and_preambles():
    assert R.check_query("") == "empty query"
    assert R.check_query("Sure! Here is the query:") == "a preamble, not a query: 'Sure! Here is the query:'"
    assert R.check_query("New query:") == "a preamble, not a query: 'New query:'"
    assert R.check_query("Summarise what the dialogue says...") == (
        "echoes the instructions ('Summarise what the dialogue says about the image'): "
        "'Summarise what the dialogue says...'")
    assert R.check_query("Reply with the final query only, on one line.").startswith(
        "echoes the instructions ('Reply with the final query only')")
    assert R.check_query("Summary: the dialogue describes a dog").startswith("an echoed template step")
    assert R.check_query("<think>") == "leftover reasoning tags in '<think>'"
    assert R.check_query("a red dog summarised on a lawn") is None
    assert R.check_query("Here is a dog with a caption on its collar") is None  # not a preamble
    assert R.check_query("Here are three distinct prompts.").startswith("a preamble")


@pytest.mark.parametrize("reply, prompts", [
    (THINK_R2, R2_GOOD),
    ("Here are 3 prompts:\n" + "\n".join(R2_GOOD), R2_GOOD),  # preamble
    ("- " + R2_GOOD[0] + "\n* " + R2_GOOD[1] + "\n\u2022 " + R2_GOOD[2], R2_GOOD),  # bullets
    ('1) "' + R2_GOOD[0] + '"\n2) \u201c' + R2_GOOD[1] + '\u201d\n3) \'' + R2_GOOD[2] + "'", R2_GOOD),  # quotes
    ("Prompt 1:\n" + R2_GOOD[0] + "\nPrompt 2: " + R2_GOOD[1] + "\nPrompt 3: " + R2_GOOD[2], R2_GOOD),
    # duplicates (case and final full stop do not count) are dropped before counting
    ("\n".join([R2_GOOD[0], R2_GOOD[0].upper(), R2_GOOD[1], R2_GOOD[1].rstrip("."), R2_GOOD[2]]), R2_GOOD),
    ("```\n" + "\n".join(R2_GOOD) + "\n```\nThese prompts vary the amount of detail.", R2_GOOD),
    ("Query: a big red dog\n1. " + R2_GOOD[0] + " 2. " + R2_GOOD[1] + " 3. " + R2_GOOD[2], R2_GOOD),
])
def test_parse_prompts_structural(reply, prompts):
    assert R.parse_prompts(reply) == prompts
    assert R.check_prompts(prompts, 3) is None


def test_check_prompts_rejects_junk():
    assert R.parse_prompts("<think>\nI need three prompts...\n</think>") == []
    assert R.check_prompts(["a", "A."], 2) == "duplicate prompts in ['a', 'A.']"
    assert R.check_prompts(R2_GOOD[:2], 3) == "expected 3 distinct prompts, got 2"
    pattern = "[Adjective] [Primary Subject] in [Setting], [Key Details]. Style: photorealistic."
    assert R.check_prompts([R2_GOOD[0], pattern], 2) == (
        f"prompt 1 leaves the pattern's slots ['[Adjective]', '[Primary Subject]', '[Setting]', '[Key Details]'] "
        f"unfilled: {pattern!r}")
    assert R.check_prompts([R2_GOOD[0], "Style: photorealistic."], 2) == (
        "prompt 1 has nothing but the style suffix: 'Style: photorealistic.'")
    assert R.check_prompts([R2_GOOD[0], "Vary the wording and the amount of detail between prompts."], 2) == (
        "prompt 1 echoes the instructions ('Vary the wording and the amount of detail between prompts'): "
        "'Vary the wording and the amount of detail between prompts.'")


def test_openai_issue_replies_parse_structurally():
    for reply in (THINK_R1, STEPS_R1, SURE_R1):
        with FakeOpenAI([{"content": reply}]) as srv:
            assert _client(srv.url).rewrite(TURNS) == GOOD_Q
            assert len(srv.requests) == 1  # usable at once: no retry
    with FakeOpenAI([{"content": THINK_R2}]) as srv:
        assert _client(srv.url).prompts("a big red dog", 3) == R2_GOOD
        assert len(srv.requests) == 1


def test_openai_retry_uses_the_second_good_reply(tmp_path):
    with FakeOpenAI([{"content": "<think>\nthe user wants a query\n</think>\nSure! Here is the query:"},
                     {"content": GOOD_Q}]) as srv:
        ref = _client(srv.url)
        cached = R.CachedReformulator(ref, ArtefactStore(tmp_path))
        assert cached.rewrite(TURNS) == GOOD_Q
        assert len(srv.requests) == 2 and ref.fallbacks == 0
        first, second = srv.requests[0][2]["messages"], srv.requests[1][2]["messages"]
        assert first == P.r1_messages(TURNS)
        assert second == [*first, {"role": "assistant", "content": "Sure! Here is the query:"},
                          {"role": "user", "content": P.R1_RETRY}]
        assert cached.rewrite(TURNS) == GOOD_Q and len(srv.requests) == 2  # the good reply was cached
        assert (cached.hits, cached.misses) == (1, 1)
    with FakeOpenAI([{"content": "Here are 3 prompts:\n" + R2_GOOD[0]}, {"content": THINK_R2}]) as srv:
        assert _client(srv.url).prompts("a big red dog", 3) == R2_GOOD
        assert len(srv.requests) == 2
        assert srv.requests[1][2]["messages"][-1] == {"role": "user", "content": P.R2_RETRY.format(k=3)}


def test_openai_two_junk_replies_raise_and_cache_nothing(tmp_path):
    store = ArtefactStore(tmp_path)
    with FakeOpenAI([{"content": "1. Summarise what the dialogue says..."}]) as srv:
        cached = R.CachedReformulator(_client(srv.url), store)
        with pytest.raises(R.ReformulationError) as info:
            cached.rewrite(TURNS)
        assert len(srv.requests) == 2
    err = info.value
    assert isinstance(err, RuntimeError)
    assert (err.model_id, err.stage, err.reply) == (
        f"openai:tiny-gpt@{srv.url}", "R1", "1. Summarise what the dialogue says...")
    assert str(err) == (f"openai:tiny-gpt@{srv.url}: unusable R1 reply after 1 retry (echoes the instructions "
                        "('Summarise what the dialogue says about the image'): 'Summarise what the dialogue says...'):"
                        " '1. Summarise what the dialogue says...'")
    junk = "<think>\nI need three prompts...\n" + "x " * 400 + "\n</think>"
    with FakeOpenAI([{"content": junk}]) as srv:
        cached = R.CachedReformulator(_client(srv.url), store)
        with pytest.raises(R.ReformulationError, match=r"unusable R2 reply after 1 retry \(expected 3 distinct "
                                                       r"prompts, got 0\): '<think>.*\.\.\. \[\d+ more characters\]'"):
            cached.prompts("a big red dog", 3)
        assert len(srv.requests) == 2
    assert list(store.keys(R.CachedReformulator.KIND)) == [] and cached.misses == 1


def test_openai_fallback_is_recorded_and_not_cached(tmp_path, caplog):
    store = ArtefactStore(tmp_path)
    with FakeOpenAI([{"content": "Sure! Here is the query:"}]) as srv:
        ref = _client(srv.url, fallback=True)
        cached = R.CachedReformulator(ref, store)
        with caplog.at_level("WARNING", logger="dar_lib.models.reformulate.chat_protocol"):
            assert cached.rewrite(TURNS) == "a dog on the grass, what color is it? red, is it big? yes"
        assert ref.fallbacks == cached.fallbacks == 1 and len(srv.requests) == 2
        assert any("using the recorded fallback" in r.getMessage() and "R1" in r.getMessage() for r in caplog.records)
        got = cached.prompts("a big red dog", 4)
        assert got == ["a big red dog. Style: photorealistic.", "A photo of a big red dog. Style: photorealistic.",
                       "A realistic picture showing a big red dog. Style: photorealistic.",
                       "A photograph of a big red dog, in sharp focus. Style: photorealistic."]
        assert len(set(got)) == 4 and ref.fallbacks == 2 and len(srv.requests) == 4
        # Nothing stored: the next call asks the server again (and falls back again).
        assert cached.rewrite(TURNS) == ", ".join(TURNS) and len(srv.requests) == 6 and ref.fallbacks == 3
    assert list(store.keys(R.CachedReformulator.KIND)) == [] and (cached.hits, cached.misses) == (0, 3)
    assert P.template_prompts("q", 8) == list(dict.fromkeys(P.template_prompts("q", 8)))  # distinct for any k


def test_cache_key_changes_with_the_rewrite_code(tmp_path, monkeypatch):
    """The key names the code of the templates, protocol and parser (no hand-bumped version)."""
    from dar_lib.models.reformulate import chat_protocol

    assert set(R.REWRITE_MODULES) == {"dar_lib.models.prompts", "dar_lib.models.reformulate.chat_protocol",
                                      "dar_lib.models.reformulate.reply_parsing"}
    inner = CountingReformulator()
    cached = R.CachedReformulator(inner, ArtefactStore(tmp_path))
    assert f"|code-{code_fingerprint(*R.REWRITE_MODULES)}|" in inner.fingerprint()
    assert cached.rewrite(TURNS) == "reply 1" and cached.rewrite(TURNS) == "reply 1"
    assert (cached.hits, cached.misses, inner.calls) == (1, 1, 1)
    # Another parser: its source, and so its code fingerprint, differs.
    monkeypatch.setattr(chat_protocol, "code_fingerprint", lambda *modules: "0" * 16)
    assert "|code-0000000000000000|" in cached.fingerprint()
    assert cached.rewrite(TURNS) == "reply 2"  # a miss: outputs of another parser are not replayed
    assert (cached.hits, cached.misses, inner.calls) == (1, 2, 2)


def test_chat_is_public_and_the_llm_questioner_uses_it():
    from dar_lib.models.questioners import LLMQuestioner

    inner = CountingReformulator()
    assert inner.chat(P.r1_messages(TURNS)) == "reply 1"
    assert not hasattr(inner, "_chat")  # no private name crosses modules any more
    assert LLMQuestioner(inner).ask(TURNS) == "reply 2?"
    with pytest.raises(NotImplementedError, match="ChatReformulator does not implement chat"):
        R.ChatReformulator().chat([])


# -- endpoints: credentials never shown, query strings kept, one-line errors, a deadline ------------
SECRET = "s3cr3t-K3y-123"


def test_openai_base_url_query_and_userinfo_parse_and_the_key_is_never_shown(monkeypatch):
    """``?api-version=`` stays on every request (not mangled into the path); ``user:key@host`` is split at the
    first @."""
    import base64

    from dar_lib.models import load_reformulator, parse_spec

    monkeypatch.setenv("OPENAI_API_KEY", "sk-fromenvironment0001")
    with FakeOpenAI(["ok"]) as srv:
        ref = load_reformulator(f"openai:tiny-gpt@{srv.url}?api-version=2024-06-01&api-key={SECRET}", timeout=2.0)
        assert ref.rewrite(TURNS) == "a big red dog on the grass"
        path, headers, _ = srv.requests[-1]
        assert path == f"/v1/chat/completions?api-version=2024-06-01&api-key={SECRET}"
        assert headers["Authorization"] == "Bearer sk-fromenvironment0001"  # the key from the environment
        assert SECRET not in ref.id + ref.fingerprint() + ref.endpoint and "api-version=2024-06-01" in ref.id
        host = srv.url.split("//", 1)[1]
        spec = f"openai:tiny-gpt@http://me:{SECRET}@{host}"
        assert parse_spec(spec, ("openai",), "reformulator").model == "tiny-gpt"
        ref = load_reformulator(spec, timeout=2.0)
        ref.rewrite(TURNS)
        path, headers, _ = srv.requests[-1]
        assert path == "/v1/chat/completions"
        assert headers["Authorization"] == "Basic " + base64.b64encode(f"me:{SECRET}".encode()).decode()
        assert SECRET not in ref.id + ref.fingerprint() + ref.endpoint and "me:***@" in ref.id


@pytest.mark.parametrize("script, problem", [
    (["401"], "refused the request: HTTP 401"),
    (["html"], "not chat-completions JSON (text/html"),
    ([{"content": None}], "returned null content"),
    ([{"content": "  "}], "returned empty content"),
])
def test_openai_endpoint_failures_are_one_line_naming_the_endpoint(script, problem):
    from dar_lib.errors import EndpointError

    with FakeOpenAI(script) as srv:
        with pytest.raises(EndpointError) as err:
            _client(f"{srv.url}?api-key={SECRET}").rewrite(TURNS)
    msg = str(err.value)
    assert "\n" not in msg and problem in msg and SECRET not in msg
    assert msg.startswith("LLM endpoint http://127.0.0.1:") and "chat/completions?api-key=***" in msg


def test_openai_connection_refused_is_one_line():
    import socket

    from dar_lib.errors import EndpointError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(EndpointError) as err:
        _client(f"http://u:{SECRET}@127.0.0.1:{port}/v1").rewrite(TURNS)
    msg = str(err.value)
    assert "\n" not in msg and SECRET not in msg and "Connection refused" in msg and f"127.0.0.1:{port}" in msg


def test_openai_whole_call_ends_by_its_deadline_retries_included():
    """A silent endpoint: 5 attempts of ``timeout`` each would be allowed by ``max_retries``; the deadline stops it."""
    from dar_lib.errors import EndpointError

    with FakeOpenAI(["silent"]) as srv:
        ref = R.OpenAIReformulator("tiny-gpt", srv.url, max_retries=4, backoff=0.01, timeout=0.3, deadline=0.5)
        with pytest.raises(EndpointError, match=r"no answer after [12] attempts? \(max_retries=4, deadline 0.5 s\)"):
            ref.chat([{"role": "user", "content": "hi"}])
        assert len(srv.requests) <= 2  # 0.3 s each within 0.5 s, not max_retries + 1 = 5
    assert R.OpenAIReformulator("m", "http://h/v1", timeout=3).deadline == 6.0  # default: 2 x timeout


@pytest.mark.parametrize("kind", ["trickle-body", "trickle-head"])
def test_openai_call_ends_by_its_deadline_whatever_the_server_trickles(kind):
    """One byte every 50 ms never trips a per-read timeout; the deadline still ends the call and hangs up
    (before the fix, ``requests`` read on for the whole reply: 25 s with ``timeout=3``)."""
    from dar_lib.errors import EndpointError

    with FakeOpenAI([kind]) as srv:
        ref = R.OpenAIReformulator("tiny-gpt", srv.url, max_retries=0, timeout=0.3, deadline=0.5)
        with pytest.raises(EndpointError, match=r"deadline 0.5 s"):
            ref.chat([{"role": "user", "content": "hi"}])
        assert srv.trickle_done.wait(10), "the server was still sending: nobody hung up"
        assert srv.hung_up and srv.trickled < 200


def test_dar_eval_takes_the_llm_deadline(capsys):
    from dar_lib import cli

    with FakeOpenAI(["trickle-body"]) as srv:
        code = cli.main(["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs", "--toy-size", "smoke",
                         "--n-dialogues", "1", "--methods", "reformulated", "--quiet",
                         "--reformulator", f"openai:tiny-gpt@{srv.url}", "--llm-timeout", "0.3",
                         "--llm-deadline", "0.5"])
        err = capsys.readouterr().err
        assert code == 2 and "deadline 0.5 s" in err and len(err.strip().splitlines()) == 1, err
        srv.trickle_done.wait(10)


def test_openai_bad_base_url_is_named_redacted():
    with pytest.raises(ValueError, match=r"'ftp://u:\*\*\*@host/v1': expected http\(s\)://host"):
        R.OpenAIReformulator("m", f"ftp://u:{SECRET}@host/v1")
    with pytest.raises(ValueError, match=r"'http://u:\*\*\*@host:port/v1': expected"):
        R.OpenAIReformulator("m", f"http://u:{SECRET}@host:port/v1")


def test_dar_eval_with_a_keyed_endpoint_writes_no_key_and_fails_in_one_line(tmp_path, capsys):
    """The key in the id reaches neither the CSV (reformulator, reformulator_fingerprint) nor stderr; a 401 is
    exit 2."""
    from dar_lib.cli import main

    argv = ["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs", "--toy-size", "smoke", "--n-dialogues", "1",
            "--methods", "reformulated", "-k", "2", "--store", str(tmp_path / "store"), "--quiet"]
    with FakeOpenAI(["ok"]) as srv:
        host = srv.url.split("//", 1)[1]
        ref = f"openai:tiny-gpt@http://me:{SECRET}@{host}?api-version=1&api-key={SECRET}"
        capsys.readouterr()
        assert main([*argv, "--reformulator", ref, "--out", str(tmp_path / "ranks.csv")]) == 0
        assert srv.requests and srv.requests[0][0] == f"/v1/chat/completions?api-version=1&api-key={SECRET}"
    out, err = capsys.readouterr()
    csv = (tmp_path / "ranks.csv").read_text()
    assert SECRET not in csv + out + err and "api-key=***" in csv and "me:***@" in csv
    assert f"artefact store {(tmp_path / 'store').resolve()}" in err
    with FakeOpenAI(["401"]) as srv:
        host = srv.url.split("//", 1)[1]
        rc = main([*argv, "--reformulator", f"openai:tiny-gpt@http://me:{SECRET}@{host}"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 2 and "Traceback" not in err and SECRET not in err and err.count("dar: error") == 1
    assert last.startswith("dar: error: LLM endpoint http://me:***@127.0.0.1:") and "HTTP 401" in last


def test_cached_reformulator_keys_come_from_cachekeys_and_it_passes_the_fact_reader_through(tmp_path):
    """The cache wrapper keys each output with :func:`dar_lib.cachekeys.llm_key` (the one module of keys, with
    the LLM kind's code version) and exposes the toy rules' fact reader, so no caller looks through it."""
    from dar_lib.benchmarks.toyworld import ToyReformulator
    from dar_lib.cachekeys import llm_key

    store = ArtefactStore(tmp_path)
    rules = ToyReformulator()
    cached = R.CachedReformulator(rules, store)
    query = cached.rewrite(["a red circle", "is it big? yes"], ref=("t.png", 1))
    prompts = cached.prompts(query, 2)
    assert sorted(store.keys("llm")) == sorted([
        llm_key(rules.fingerprint(), stage="R1", turns=["a red circle", "is it big? yes"], ref=["t.png", 1]),
        llm_key(rules.fingerprint(), stage="R2", query=query, k=2)])
    assert store.get_json("llm", llm_key(rules.fingerprint(), stage="R2", query=query, k=2)) == {"output": prompts}
    assert cached.facts(["a red circle"]).known() == rules.facts(["a red circle"]).known()
    assert R.CachedReformulator(R.IdentityReformulator(), store).facts is None
    turns = ["a red circle", "what color is the background? blue"]
    assert cached.read_turn(turns) == rules.read_turn(turns) and cached.read_turn(turns).kind == "new"
    assert R.CachedReformulator(R.IdentityReformulator(), store).read_turn is None
