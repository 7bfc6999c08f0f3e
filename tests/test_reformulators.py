"""Reformulators: prompt parsing, a tiny chat LM, an OpenAI-compatible server on localhost, replay, cache."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from dar_lib.errors import DataError
from dar_lib.models import prompts as P
from dar_lib.models import reformulators as R
from dar_lib.store import ArtefactStore

from test_encoders import make_tokenizer

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


def test_parse_prompts_numbered_bulleted_padded_trimmed():
    text = ("Here are the prompts:\n1. Red dog in a park, grass. Style: photorealistic.\n"
            "2) Big red dog in a garden, sunny. Style: photorealistic.\n\n- A dog in a field. Style: photorealistic.\n"
            "* \"Quoted dog in a yard.\"\nPrompt 5: Fifth dog.")
    got = R.parse_prompts(text, 5, "fallback")
    assert got == ["Red dog in a park, grass. Style: photorealistic.",
                   "Big red dog in a garden, sunny. Style: photorealistic.",
                   "A dog in a field. Style: photorealistic.", "Quoted dog in a yard.", "Fifth dog."]
    assert R.parse_prompts(text, 2, "fb") == got[:2]
    assert R.parse_prompts("only one", 3, "fb") == ["only one"] * 3
    assert R.parse_prompts("a\nb", 3, "fb") == ["a", "b", "a"]
    assert R.parse_prompts("\n  \n", 2, "fb") == ["fb", "fb"]
    assert R.clean_query('Query: "a red dog on grass"\nmore') == "a red dog on grass"


def tiny_chat_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = make_tokenizer(512)
    tok.chat_template = CHAT_TEMPLATE
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval(), tok


def test_hf_chat_reformulator_deterministic_k_prompts():
    model, tok = tiny_chat_lm()
    ref = R.HFChatReformulator(model, tok, id="tiny-llama", device="cpu", max_new_tokens=12)
    q1, q2 = ref.rewrite(TURNS), ref.rewrite(TURNS)
    assert q1 == q2 and q1  # greedy: same reply; never empty
    p = ref.prompts("a red dog", 3)
    assert len(p) == 3 and all(isinstance(x, str) and x for x in p)
    assert p == ref.prompts("a red dog", 3)
    assert ref.id == "hf-llm:tiny-llama@unpinned"
    assert '"max_new_tokens": 12' in ref.fingerprint() and P.TEMPLATE_VERSION in ref.fingerprint()


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
    """A chat-completions server on 127.0.0.1:<free port> that plays a script of answers."""

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
                if kind == "sleep":
                    time.sleep(0.6)
                    kind = "ok"
                if kind == "ok":
                    user = body["messages"][-1]["content"]
                    text = ("1. Red dog in a park. Style: photorealistic.\n2. Big dog on grass. Style: photorealistic."
                            if "Write" in user and "prompts" in user else "a big red dog on the grass")
                    payload, code = json.dumps({"choices": [{"message": {"content": text}}]}).encode(), 200
                elif kind == "bad-json":
                    payload, code = b"{not json", 200
                else:
                    payload, code = b'{"error": "boom"}', int(kind)
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

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
        assert ref.prompts("a red dog", 3) == ["Red dog in a park. Style: photorealistic.",
                                               "Big dog on grass. Style: photorealistic.",
                                               "Red dog in a park. Style: photorealistic."]
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
        with pytest.raises(RuntimeError, match=r"chat/completions refused the request: HTTP 401"):
            _client(srv.url).rewrite(TURNS)
        assert len(srv.requests) == 1  # a client error is not retried
    with FakeOpenAI(["bad-json"]) as srv:
        with pytest.raises(RuntimeError, match=r"127\.0\.0\.1.*malformed JSON"):
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


class CountingReformulator(R._ChatReformulator):
    def __init__(self):
        self.id = "count"
        self.calls = 0
        self.temperature = 0.0

    def settings(self):
        return {"temperature": self.temperature}

    def _chat(self, messages):
        self.calls += 1
        return f"reply {self.calls}"


def test_cached_reformulator(tmp_path):
    inner = CountingReformulator()
    cached = R.CachedReformulator(inner, ArtefactStore(tmp_path))
    assert cached.rewrite(TURNS) == "reply 1"
    assert cached.rewrite(TURNS, ref=("x", 2)) == "reply 1"  # LLM output does not depend on ref
    assert cached.prompts("q", 2) == ["reply 2"] * 2
    assert cached.prompts("q", 2) == ["reply 2"] * 2
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
        with pytest.raises(ImportError, match="llama-cpp-python"):
            R.LlamaCppReformulator(tmp_path / "m.gguf")
        pytest.skip("llama_cpp is not installed: only the missing-dependency error is checked")
    with pytest.raises(FileNotFoundError, match="m.gguf"):
        R.LlamaCppReformulator(tmp_path / "m.gguf")
