"""The live explorer: a person searches turn by turn and sees what DAR imagined (ipywidgets only, no page script).

Two halves, so the logic is testable without a browser:

- :class:`LiveSearch` holds one search: the initial description (a person's own, or a benchmark
  dialogue's caption and its target), the :class:`~dar_lib.pipeline.Session`, the facts the toy
  reader read from each answer, undo/reset, and the candidate a person marked "this is it".
- :func:`live_app` builds the widgets around it. Every element is a fresh widget per call, so two
  apps on one page never share an element (the HTML explorer's content-hash id did). Images are
  ``ipywidgets.Image`` (PNG bytes through the widget protocol), never HTML with a ``<script>``:
  ``ipywidgets.HTML`` sets ``innerHTML``, where scripts do not run (issue 17).

Examples:
    >>> from dar_lib.benchmarks import load_benchmark
    >>> from dar_lib.models import load_encoder, load_generator, load_reformulator
    >>> from dar_lib.pipeline import DARPipeline
    >>> bench = load_benchmark("toy-visdial", toy_size="smoke")
    >>> pipe = DARPipeline(load_reformulator("toy:rules"), load_generator("toy:sd"), load_encoder("toy:clip-zs"))
    >>> pipe.index(bench=bench)
    >>> app = live_app(pipe, bench)  # an ipywidgets.VBox: show it in Jupyter, or serve it with `dar explore`
    >>> type(app).__name__
    'VBox'
"""

from __future__ import annotations

import html
import io
import traceback
from dataclasses import dataclass, field
from typing import Any, Sequence

from dar_lib.models import load_questioner


class Refusal(RuntimeError):
    """A person's action that cannot apply now (an answer after the end, undo at round 0, an empty answer):
    the app shows its message in one line, not as a Python error."""


@dataclass
class TurnView:
    """What one turn showed: the answer's turn text, the facts read from it, and the ranking.

    Attributes:
        turn: the raw turn (``"question? answer"``; the description for round 0).
        read: the facts the reader took from this turn (``{"background", "count", "objects"}`` entries
            that changed), ``None`` when the pipeline's reformulator cannot say (not the toy reader).
        unread: True when the reader took nothing from a non-empty answer (flagged in the view).
        target_rank: 1-based expected rank of the target this round (``None``: no target known).
        restated: facts the answer states that were already known (acknowledged, not flagged).
        unsure: True when the person said they do not know ("not sure", "no idea").
        unused: facts the answer states that answer another question than the one asked (not taken).
    """

    turn: str
    read: dict | None = None
    unread: bool = False
    target_rank: float | None = None
    restated: dict | None = None
    unsure: bool = False
    unused: dict | None = None


@dataclass
class LiveSearch:
    """One person-driven search over an indexed pipeline (Algorithm 1, one turn per answer).

    Args:
        pipe: an indexed :class:`~dar_lib.pipeline.DARPipeline` (its questioner, if any, asks).
        bench: the benchmark whose corpus the pipeline indexed (for images and targets).
    """

    pipe: Any
    bench: Any
    session: Any = None
    target_id: int | None = None
    views: list[TurnView] = field(default_factory=list)
    found: dict | None = None

    # -- starting --------------------------------------------------------------------------
    def start(self, description: str, target_id: int | None = None) -> None:
        """Start from a person's description (round 0); ``target_id`` is the corpus id searched for, if known.

        Raises:
            ValueError: an empty description, or a target id outside the corpus.
        """
        if not description or not description.strip():
            raise ValueError("type a description of the image you are looking for first")
        if target_id is not None and not 0 <= int(target_id) < len(self.bench.corpus_paths):
            raise ValueError(f"target id {target_id} is not in the corpus of {len(self.bench.corpus_paths)} images")
        self.target_id = None if target_id is None else int(target_id)
        self.found = None
        self.session = self.pipe.session(description)
        self.views = [self._view(description.strip())]

    def start_dialogue(self, dialog_idx: int) -> None:
        """Start from a benchmark dialogue's caption, searching for its target.

        Raises:
            IndexError: no such dialogue (the message names the range).
        """
        n = len(self.bench.dialogues)
        if not 0 <= dialog_idx < n:
            raise IndexError(f"dialogue {dialog_idx} is not in {self.bench.name} (0..{n - 1})")
        d = self.bench.dialogues[dialog_idx]
        self.start(d.caption, target_id=d.target_id)

    # -- turns ----------------------------------------------------------------------------
    def ask(self) -> str | None:
        """The questioner's next question, or ``None`` when the pipeline has none (the person asks)."""
        self._check_started()
        return self.session.ask() if self.pipe.questioner is not None else None

    def answer(self, answer: str, question: str | None = None):
        """One turn: add the answer (to ``question`` or the pending one) and re-rank.

        Raises:
            RuntimeError: not started.
            Refusal: the search already ended with a marked image, or an empty answer.
            ValueError: no question (from :meth:`Session.answer`).
        """
        self._check_started()
        if self.found is not None:
            raise Refusal(f"this search is over: you marked image {self.found['id']} at round {self.found['round']}; "
                          "press undo to go on searching, or reset to start a new one")
        if not answer or not answer.strip():
            raise Refusal("type an answer first (a few words about the image you are looking for)")
        result = self.session.answer(answer, question=question)
        self.views.append(self._view(self.session.turns[-1]))
        return result

    def undo(self) -> bool:
        """Drop the last turn (or the mark "this is it").

        Raises:
            Refusal: only round 0 is left (nothing to undo).
        """
        self._check_started()
        if self.found is not None:
            self.found = None
            return True
        if len(self.session.turns) <= 1:
            raise Refusal("nothing to undo: this is the first round (reset starts a new search)")
        self.session.turns.pop()
        self.session.results.pop()
        self.session.pending_question = None
        self.views.pop()
        return True

    def reset(self) -> None:
        """Forget the search (the widgets go back to the description field)."""
        self.session, self.views, self.found, self.target_id = None, [], None, None

    def mark(self, position: int) -> dict:
        """A person says "this is it" about the candidate at 0-based ``position`` of the current top list.

        Returns:
            ``{"id", "round", "turns_to_success", "correct"}``: the corpus id, the round it was marked
            at, the number of question/answer turns it took (= the round), and whether it is the
            known target (``None`` when no target is known).

        Raises:
            IndexError: no candidate at that position.
        """
        self._check_started()
        top = [int(i) for i in self.result.top_ids]
        if not 0 <= position < len(top):
            raise IndexError(f"no candidate #{position + 1}: the top list holds {len(top)}")
        rnd = self.result.round_idx
        self.found = {"id": top[position], "round": rnd, "turns_to_success": rnd,
                      "correct": None if self.target_id is None else top[position] == self.target_id}
        return self.found

    def marked_ranks(self) -> list[float]:
        """1-based expected rank, after each round so far, of the image marked "this is it" (empty before a mark):
        in a free search (no known target) how the search closed in on the image the person wanted."""
        import torch

        if self.found is None:
            return []
        fused = torch.stack([r.fused_emb for r in self.session.results])
        return [1.0 + float(r) for r in self.pipe.target_ranks(fused, [self.found["id"]] * len(fused))]

    # -- reading -----------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """True once :meth:`start` ran (and no :meth:`reset` since)."""
        return self.session is not None

    @property
    def result(self):
        """The latest :class:`~dar_lib.pipeline.TurnResult`."""
        self._check_started()
        return self.session.results[-1]

    def rank_history(self) -> list[float]:
        """1-based expected rank of the target after each round so far (empty when no target is known)."""
        return [v.target_rank for v in self.views if v.target_rank is not None]

    def _check_started(self) -> None:
        if self.session is None:
            raise RuntimeError("no search yet: start() with a description first")

    def _view(self, turn: str) -> TurnView:
        reader = getattr(self.pipe.reformulator, "read_turn", None)  # the toy reader; an LLM cannot say
        view = TurnView(turn=turn)
        if reader is not None:
            reading = reader(self.session.turns)
            view.read = reading.facts if reading.kind == "new" else {}
            view.restated = reading.facts if reading.kind == "restated" else None
            view.unsure = reading.kind == "unsure"
            view.unused = reading.facts if reading.kind == "unused" else None
            view.unread = reading.kind == "unread" and len(self.session.turns) > 1
        if self.target_id is not None:
            view.target_rank = 1.0 + float(self.pipe.target_ranks(self.result.fused_emb[None], [self.target_id])[0])
        return view


def png_bytes(image: Any) -> bytes:
    """A PIL image (or HxWx3 uint8 array) as PNG bytes for ``ipywidgets.Image``."""
    import numpy as np
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def rank_plot_png(ranks: Sequence[float], n_corpus: int, label: str = "target rank") -> bytes:
    """A 1-based rank per round as a log-scale line plot of fixed size (PNG bytes, 240 x 150 px).

    The y ticks are plain numbers (1, 10, 100, ...), best at the top; the x axis shows rounds 0..10
    whatever the number played, so the plot neither grows nor rescales from turn to turn.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    fig = Figure(figsize=(3.0, 1.875), dpi=80)
    ax = fig.add_subplot()
    ax.plot(range(len(ranks)), ranks, marker="o", color="#0072B2")
    ax.set_yscale("log")
    top = max(n_corpus, 10)
    ax.set_ylim(top, 0.8)
    ticks = [t for t in (1, 10, 100, 1000, 10000, 100000) if t <= top]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels([f"{t:,}" for t in ticks])
    ax.set_xlim(-0.5, max(10, len(ranks) - 1) + 0.5)
    ax.set_xticks(range(0, max(10, len(ranks) - 1) + 1, 2))
    ax.set_xlabel("round")
    ax.set_ylabel(label)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


IMAGE_PX = 96  #: generated and retrieved images are shown at one size (pixels)

_STYLE = """<style>
.dar-live img{image-rendering:pixelated}
.dar-live .dar-target-mark img{outline:3px solid #000;box-shadow:0 0 0 6px #fff,0 0 0 9px #000}
.dar-live .dar-marked img{outline:4px solid #009E73;box-shadow:0 0 0 7px #fff,0 0 0 10px #009E73}
.dar-live .dar-unread{color:#b00020;font-weight:bold}
.dar-live .dar-refusal{color:#8a4b00;font-weight:bold}
.dar-live .dar-question-text{font-size:15px;padding:2px 0}
</style>"""


def _turns_html(search: LiveSearch, marked: Sequence[float]) -> str:
    """The dialogue so far, each turn with what the reader took from it and its rank (``marked``: the
    marked image's rank per round, :meth:`LiveSearch.marked_ranks`)."""
    n = len(search.bench.corpus_paths)
    rows = []
    for j, v in enumerate(search.views):
        text = html.escape(v.turn)
        if v.unread:
            note = '<span class="dar-unread">not understood: nothing read from this answer</span>'
        elif v.read:
            note = "read: " + html.escape(", ".join(f"{k}={v.read[k]}" for k in v.read))
        elif v.restated:
            note = "already known: " + html.escape(", ".join(f"{k}={v.restated[k]}" for k in v.restated))
        elif v.unsure:
            note = "noted: you are not sure (nothing changes)"
        elif v.unused:
            note = ('<span class="dar-unread">not used: this answers another question than the one asked ('
                    + html.escape(", ".join(f"{k}={v.unused[k]}" for k in v.unused)) + ")</span>")
        else:
            note = ""
        if v.target_rank is not None:
            note += f" <span class='dar-rank'>target rank {v.target_rank:,.0f} of {n:,}</span>"
        elif j < len(marked):
            note += f" <span class='dar-rank'>the image you marked: rank {marked[j]:,.0f} of {n:,}</span>"
        rows.append(f"<li value='{j}'>{text}<br><small>{note}</small></li>")
    return "<b>dialogue so far</b><ol class='dar-turns'>" + "".join(rows) + "</ol>"


def _intro_html(pipe) -> str:
    reader = html.escape(str(getattr(pipe.encoder, "id", "the encoder")))
    k = int(getattr(pipe, "k_images", 3))
    return (
        "<h3 style='margin:4px 0'>Find an image by describing it: Diffusion Augmented Retrieval (DAR)</h3>"
        "<p style='margin:2px 0;max-width:1100px'>Describe the image you are looking for and press Enter (or pick "
        "a dialogue from the benchmark to search for its target). DAR rewrites everything said so far into one "
        f"search query, <i>imagines</i> {k} pictures from it with a text-to-image model, and ranks every image "
        "of the collection by the query and the imagined pictures together. Answer each question in a few words "
        "and press Enter; when you see your image among the top 10, press <b>this is it</b> under it.</p>"
        f"<p style='margin:2px 0'><small>reader (encoder): <code class='dar-reader'>{reader}</code></small></p>")


#: Torch intra-op threads during a live turn. A turn is a few small batches; on a shared 2-core CPU a
#: second OpenMP thread spins against the other processes and made generation ~10x slower (1.7-2.9 s
#: against 0.2-0.3 s for K = 3 images, ``measure/live_turn.py``): the 6.7-8.1 s of issue 17.
LIVE_TORCH_THREADS = 1


def live_app(pipe, bench, questioner=None, dialog_idx: int | None = None,
             torch_threads: int | None = LIVE_TORCH_THREADS):
    """The live explorer as one ``ipywidgets.VBox`` (new widgets each call).

    The first screen says what DAR does and what to type, and names the reader (the encoder). Controls:
    a description field (Enter starts) or a benchmark dialogue to pick (its caption and target); the
    question (text, from the questioner; without one the person types it) and an answer field (Enter
    submits), both right under the description so the newest turn needs no scrolling; undo, reset,
    and a "this is it" button under each top-10 candidate. While a turn runs the controls are
    disabled and the status says so. After "this is it" the marked image is outlined, the number of
    turns shown and the answer disabled until undo or reset. A refusal (an empty answer, an answer
    after the end, undo at round 0) is one line in the app; an unexpected error in a turn is shown
    in the app too, with its type.

    Args:
        pipe: an indexed :class:`~dar_lib.pipeline.DARPipeline`.
        bench: the benchmark its corpus comes from.
        questioner: asks the questions; default: the toy questioner on a toy benchmark, else none
            (the person types the question too).
        dialog_idx: start at once from this benchmark dialogue (``None``: wait for a description).
        torch_threads: ``torch.set_num_threads`` for the kernel (see :data:`LIVE_TORCH_THREADS`);
            ``None`` leaves it as it is.

    Returns:
        The app; ``app.search`` is its :class:`LiveSearch`.
    """
    import ipywidgets as W

    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    if questioner is None and bench.meta.get("scenes") is not None:
        questioner = load_questioner("toy", scenes=bench.meta["scenes"])
    pipe.questioner = questioner
    search = LiveSearch(pipe, bench)
    n_corpus = len(bench.corpus_paths)

    description = W.Text(placeholder="describe the image you are looking for, e.g. 'a red circle on a blue "
                                     "background', then press Enter",
                         continuous_update=False, layout=W.Layout(width="70%"))
    start_btn = W.Button(description="start", button_style="primary")
    picker = W.Dropdown(options=[(f"{bench.name} dialogue {i}", i) for i in range(min(50, len(bench.dialogues)))],
                        layout=W.Layout(width="40%"))
    pick_btn = W.Button(description="search for its target")
    # the questioner's question is shown as text; without a questioner the person types one
    question = W.HTML() if questioner is not None else W.Text(
        description="question", placeholder="type a question about the image", continuous_update=False,
        layout=W.Layout(width="90%"))
    answer = W.Text(description="answer", placeholder="type your answer and press Enter",
                    continuous_update=False, layout=W.Layout(width="90%"))
    answer_btn = W.Button(description="answer", button_style="primary")
    undo_btn = W.Button(description="undo")
    reset_btn = W.Button(description="reset")
    status = W.HTML()
    error = W.HTML()
    turns = W.HTML()
    query = W.HTML()
    target_box = W.VBox()
    gen_box = W.HBox()
    top_box = W.HBox(layout=W.Layout(flex_flow="row nowrap", overflow="auto"))
    rank_img = W.Image(format="png", layout=W.Layout(width="240px", height="150px", object_fit="contain",
                                                     flex="0 0 auto"))
    found = W.HTML()
    controls = [description, start_btn, pick_btn, answer, answer_btn, undo_btn, reset_btn]
    if questioner is None:
        controls.append(question)
    busy = {"on": False}

    def img(image, caption, extra=None):
        box = W.VBox([W.Image(value=png_bytes(image), format="png", width=IMAGE_PX, height=IMAGE_PX),
                      W.HTML(f"<small>{html.escape(caption)}</small>", layout=W.Layout(width=f"{IMAGE_PX + 8}px"))]
                     + ([extra] if extra is not None else []))
        return box

    def question_text() -> str:
        """The pending question (the questioner's), or what the person typed."""
        if questioner is None:
            return question.value or None
        return search.session.pending_question if search.started else None

    def set_question(text: str) -> None:
        if questioner is not None:
            question.value = (f"<div class='dar-question-text'><b>question:</b> {html.escape(text)}</div>"
                              if text else "")
        else:
            question.value = text

    def enable() -> None:
        """Controls as the search's state allows: no answer before a start or after "this is it"."""
        for w in controls:
            w.disabled = False
        ended = search.started and search.found is not None
        answer.disabled = answer_btn.disabled = not search.started or ended
        undo_btn.disabled = not search.started
        if questioner is None:
            question.disabled = answer.disabled

    def render():
        if not search.started:
            for w in (turns, query, found):
                w.value = ""
            gen_box.children, top_box.children, target_box.children = (), (), ()
            rank_img.layout.display = "none"
            set_question("")
            return
        res = search.result
        marked_ranks = search.marked_ranks()  # one ranking pass per render, for the list and the plot
        turns.value = _turns_html(search, marked_ranks)
        query.value = (f"<b>query S<sub>t</sub> (round {res.round_idx})</b>"
                       f"<div class='dar-query'>{html.escape(res.query)}</div>")
        gen_box.children = [img(im, f"picture {k + 1}, drawn from: {res.prompts[k] if k < len(res.prompts) else ''}")
                            for k, im in enumerate(res.images)]
        top = [int(i) for i in res.top_ids]
        boxes = []
        marked = search.found["id"] if search.found else None
        for j, (cid, im) in enumerate(zip(top, bench.corpus_images(top))):
            mark = W.Button(description="this is it", layout=W.Layout(width=f"{IMAGE_PX + 8}px"),
                            disabled=marked is not None)
            mark.on_click(lambda _b, j=j: guarded(lambda: search.mark(j)))
            mark.add_class("dar-mark")
            label = f"#{j + 1} (id {cid})" + (" target" if cid == search.target_id else "") + \
                (" - marked" if cid == marked else "")
            box = img(im, label, mark)
            box.add_class("dar-candidate")
            if cid == search.target_id:
                box.add_class("dar-target-mark")
            if cid == marked:
                box.add_class("dar-marked")
            boxes.append(box)
        top_box.children = boxes
        if search.target_id is not None:
            tbox = img(bench.corpus_images([search.target_id])[0], f"target (id {search.target_id})")
            tbox.add_class("dar-target-mark")
            target_box.children = [tbox]
        else:
            target_box.children = ()
        ranks, label = search.rank_history(), "target rank"
        if not ranks and search.found is not None:
            ranks, label = marked_ranks, "marked image's rank"
        if ranks:
            rank_img.value = rank_plot_png(ranks, n_corpus, label)
            rank_img.layout.display = None
        else:
            rank_img.layout.display = "none"
        if search.found:
            f = search.found
            verdict = "" if f["correct"] is None else (": the target" if f["correct"] else ": not the target")
            turns_word = "turn" if f["turns_to_success"] == 1 else "turns"
            found.value = (f"<b class='dar-found'>found in {f['turns_to_success']} {turns_word}: you marked image "
                           f"{f['id']} at round {f['round']}{verdict}</b> (undo to go on searching, reset for a new "
                           "search)")
        else:
            found.value = ""
        set_question(search.ask() or "" if search.found is None and questioner is not None else "")

    def guarded(action, note="imagining..."):
        """Run one action with the controls disabled; a refusal or error goes into the app, not a lost traceback."""
        if busy["on"]:
            return
        busy["on"] = True
        for w in controls:
            w.disabled = True
        status.value = f"<i>{note}</i>"
        error.value = ""
        try:
            out = action()
            render()
            status.value = (f"round {search.result.round_idx} done" if search.started else "ready")
            return out
        except (Refusal, ValueError, IndexError) as exc:  # the person's action cannot apply now: say so
            error.value = f"<div class='dar-refusal'>{html.escape(str(exc))}</div>"
            status.value = f"round {search.result.round_idx} done" if search.started else "ready"
        except Exception as exc:  # an unexpected failure: shown in the app, with its type
            error.value = (f"<pre class='dar-error' style='color:#b00020;white-space:pre-wrap'>"
                           f"{html.escape(type(exc).__name__ + ': ' + str(exc))}</pre>")
            status.value = "error"
            traceback.print_exc()
        finally:
            enable()
            busy["on"] = False

    def on_start(*_):
        if description.value.strip():
            guarded(lambda: search.start(description.value))

    def on_pick(*_):
        guarded(lambda: search.start_dialogue(int(picker.value)))

    def on_answer(*_):
        text = answer.value.strip()
        if not search.started:
            return

        def turn():
            search.answer(text, question=question_text())
            answer.value = ""
        guarded(turn)

    def on_undo(*_):
        guarded(search.undo, note="undoing...")

    def on_reset(*_):
        def reset():
            search.reset()
            description.value = answer.value = ""
            if questioner is None:
                question.value = ""
        guarded(reset, note="resetting...")

    # Enter submits: with continuous_update=False a Text's value syncs on Enter (or leaving the field).
    description.observe(lambda ch: on_start() if ch["new"].strip() else None, names="value")
    answer.observe(lambda ch: on_answer() if ch["new"].strip() else None, names="value")
    start_btn.on_click(on_start)
    pick_btn.on_click(on_pick)
    answer_btn.on_click(on_answer)
    undo_btn.on_click(on_undo)
    reset_btn.on_click(on_reset)

    for w, cls in ((description, "dar-description"), (answer, "dar-answer"), (question, "dar-question"),
                   (answer_btn, "dar-answer-btn"), (undo_btn, "dar-undo"), (reset_btn, "dar-reset"),
                   (status, "dar-status"), (error, "dar-error-box"), (gen_box, "dar-gen"), (top_box, "dar-top"),
                   (turns, "dar-turns-box"), (query, "dar-query-box"), (rank_img, "dar-rank-plot"),
                   (found, "dar-found-box"), (start_btn, "dar-start"), (picker, "dar-picker"), (pick_btn, "dar-pick")):
        w.add_class(cls)
    app = W.VBox([
        W.HTML(_STYLE), W.HTML(_intro_html(pipe)),
        W.HBox([description, start_btn]),
        W.HBox([W.Label("or"), picker, pick_btn]),
        question, answer, W.HBox([answer_btn, undo_btn, reset_btn, status]), error, found,
        W.HTML("<b>top 10 (press \"this is it\" under the image you are looking for)</b>"), top_box,
        W.HTML(f"<b>what DAR imagined this round: {int(getattr(pipe, 'k_images', 3))} pictures drawn from prompts "
               "written from the query</b>"), gen_box,
        W.HBox([target_box, W.VBox([turns, query], layout=W.Layout(flex="1")), rank_img]),
    ])
    app.add_class("dar-live")
    app.search = search
    app.render = render
    if dialog_idx is not None:
        guarded(lambda: search.start_dialogue(dialog_idx))
    else:
        render()
        enable()
    return app
