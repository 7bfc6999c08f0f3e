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


@dataclass
class TurnView:
    """What one turn showed: the answer's turn text, the facts read from it, and the ranking.

    Attributes:
        turn: the raw turn (``"question? answer"``; the description for round 0).
        read: the facts the reader took from this turn (``{"background", "count", "objects"}`` entries
            that changed), ``None`` when the pipeline's reformulator cannot say (not the toy reader).
        unread: True when the reader took nothing from a non-empty answer (flagged in the view).
        target_rank: 1-based expected rank of the target this round (``None``: no target known).
    """

    turn: str
    read: dict | None = None
    unread: bool = False
    target_rank: float | None = None


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
        self.views = [self._view(description.strip(), before=None)]

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
            RuntimeError: not started, or the search already ended with a marked target.
            ValueError: an empty answer or no question (from :meth:`Session.answer`).
        """
        self._check_started()
        if self.found is not None:
            raise RuntimeError("this search is over (a target was marked); undo or reset to go on")
        before = self._facts(self.session.turns)
        result = self.session.answer(answer, question=question)
        self.views.append(self._view(self.session.turns[-1], before=before))
        return result

    def undo(self) -> bool:
        """Drop the last turn (or the mark "this is it"); False when only round 0 is left."""
        self._check_started()
        if self.found is not None:
            self.found = None
            return True
        if len(self.session.turns) <= 1:
            return False
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

    def _facts(self, turns: Sequence[str]) -> dict | None:
        reader = getattr(self.pipe.reformulator, "facts", None)  # the toy reader; an LLM cannot say
        return None if reader is None else reader(list(turns)).known()

    def _view(self, turn: str, before: dict | None) -> TurnView:
        after = self._facts(self.session.turns)
        read = None
        if after is not None:
            old = before or {"background": None, "count": None, "objects": []}
            read = {k: v for k, v in after.items() if v != old.get(k)}
        rank = None
        if self.target_id is not None:
            rank = 1.0 + float(self.pipe.target_ranks(self.result.fused_emb[None], [self.target_id])[0])
        unread = read is not None and not read and before is not None
        return TurnView(turn=turn, read=read, unread=unread, target_rank=rank)


def png_bytes(image: Any) -> bytes:
    """A PIL image (or HxWx3 uint8 array) as PNG bytes for ``ipywidgets.Image``."""
    from PIL import Image
    import numpy as np

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def rank_plot_png(ranks: Sequence[float], n_corpus: int) -> bytes:
    """The target's 1-based rank per round as a small log-scale line plot (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.0, 1.6), dpi=80)
    ax = fig.add_subplot()
    ax.plot(range(len(ranks)), ranks, marker="o", color="#0072B2")
    ax.set_yscale("log")
    ax.set_ylim(max(n_corpus, 10), 0.8)
    ax.set_xlabel("round")
    ax.set_ylabel("target rank")
    ax.set_xticks(range(len(ranks)))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


IMAGE_PX = 96  #: generated and retrieved images are shown at one size (pixels)

_STYLE = """<style>
.dar-live img{image-rendering:pixelated}
.dar-live .dar-target-mark img{outline:3px solid #000;box-shadow:0 0 0 6px #fff,0 0 0 9px #000}
.dar-live .dar-unread{color:#b00020;font-weight:bold}
</style>"""


def _turns_html(search: LiveSearch) -> str:
    rows = []
    for j, v in enumerate(search.views):
        text = html.escape(v.turn)
        if v.unread:
            note = '<span class="dar-unread">not understood: nothing read from this answer</span>'
        elif v.read:
            note = "read: " + html.escape(", ".join(f"{k}={v.read[k]}" for k in v.read))
        else:
            note = ""
        rows.append(f"<li value='{j}'>{text}<br><small>{note}</small></li>")
    return "<b>dialogue so far</b><ol class='dar-turns'>" + "".join(rows) + "</ol>"


#: Torch intra-op threads during a live turn. A turn is a few small batches; on a shared 2-core CPU a
#: second OpenMP thread spins against the other processes and made generation ~10x slower (1.7-2.9 s
#: against 0.2-0.3 s for K = 3 images, ``measure/live_turn.py``): the 6.7-8.1 s of issue 17.
LIVE_TORCH_THREADS = 1


def live_app(pipe, bench, questioner=None, dialog_idx: int | None = None,
             torch_threads: int | None = LIVE_TORCH_THREADS):
    """The live explorer as one ``ipywidgets.VBox`` (new widgets each call).

    Controls: a description field (Enter starts) or a benchmark dialogue to pick (its caption and
    target); an answer field (Enter submits; the question comes from the questioner, or is typed);
    undo, reset, and a "this is it" button under each top-10 candidate. While a turn runs the
    controls are disabled and the status says so; an error in a turn is shown in the app.

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
        from dar_lib.models import load_questioner

        questioner = load_questioner("toy", scenes=bench.meta["scenes"])
    pipe.questioner = questioner
    search = LiveSearch(pipe, bench)

    description = W.Text(placeholder="describe the image you are looking for, then press Enter",
                         continuous_update=False, layout=W.Layout(width="70%"))
    start_btn = W.Button(description="start", button_style="primary")
    picker = W.Dropdown(options=[(f"{bench.name} dialogue {i}", i) for i in range(min(50, len(bench.dialogues)))],
                        layout=W.Layout(width="40%"))
    pick_btn = W.Button(description="search for its target")
    question = W.Text(description="question", continuous_update=False, layout=W.Layout(width="90%"))
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
    rank_img = W.Image(format="png", layout=W.Layout(width="240px"))
    found = W.HTML()
    controls = [description, start_btn, pick_btn, question, answer, answer_btn, undo_btn, reset_btn]
    busy = {"on": False}

    def img(image, caption, extra=None):
        box = W.VBox([W.Image(value=png_bytes(image), format="png", width=IMAGE_PX, height=IMAGE_PX),
                      W.HTML(f"<small>{html.escape(caption)}</small>", layout=W.Layout(width=f"{IMAGE_PX + 8}px"))]
                     + ([extra] if extra is not None else []))
        return box

    def render():
        if not search.started:
            for w in (turns, query, found):
                w.value = ""
            gen_box.children, top_box.children, target_box.children = (), (), ()
            rank_img.layout.display = "none"
            answer_btn.disabled = undo_btn.disabled = True
            question.value = ""
            return
        res = search.result
        turns.value = _turns_html(search)
        query.value = f"<b>query S<sub>t</sub> (round {res.round_idx})</b><div class='dar-query'>{html.escape(res.query)}</div>"
        gen_box.children = [img(im, f"k={k + 1}: {res.prompts[k] if k < len(res.prompts) else ''}")
                            for k, im in enumerate(res.images)]
        top = [int(i) for i in res.top_ids]
        boxes = []
        for j, (cid, im) in enumerate(zip(top, bench.corpus_images(top))):
            mark = W.Button(description="this is it", layout=W.Layout(width=f"{IMAGE_PX + 8}px"))
            mark.on_click(lambda _b, j=j: guarded(lambda: search.mark(j)))
            mark.add_class("dar-mark")
            box = img(im, f"#{j + 1} (id {cid})" + (" target" if cid == search.target_id else ""), mark)
            box.add_class("dar-candidate")
            if cid == search.target_id:
                box.add_class("dar-target-mark")
            boxes.append(box)
        top_box.children = boxes
        if search.target_id is not None:
            tbox = img(bench.corpus_images([search.target_id])[0], f"target (id {search.target_id})")
            tbox.add_class("dar-target-mark")
            target_box.children = [tbox]
        else:
            target_box.children = ()
        ranks = search.rank_history()
        if ranks:
            rank_img.value = rank_plot_png(ranks, len(bench.corpus_paths))
            rank_img.layout.display = None
        else:
            rank_img.layout.display = "none"
        if search.found:
            f = search.found
            verdict = "" if f["correct"] is None else (" - the target" if f["correct"] else " - not the target")
            found.value = (f"<b class='dar-found'>marked id {f['id']} at round {f['round']}: "
                           f"{f['turns_to_success']} turns to success{verdict}</b>")
        else:
            found.value = ""
        answer_btn.disabled = undo_btn.disabled = False
        if search.found is None and questioner is not None:
            question.value = search.ask() or ""

    def guarded(action, note="imagining..."):
        """Run one action with the controls disabled; its error goes into the app, not a lost traceback."""
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
            status.value = f"round {search.result.round_idx} done" if search.started else "ready"
            return out
        except Exception as exc:  # shown in the app: a person sees what went wrong
            error.value = (f"<pre class='dar-error' style='color:#b00020;white-space:pre-wrap'>"
                           f"{html.escape(type(exc).__name__ + ': ' + str(exc))}</pre>")
            status.value = "error"
            traceback.print_exc()
        finally:
            for w in controls:
                w.disabled = False
            if not search.started:
                answer_btn.disabled = undo_btn.disabled = True
            busy["on"] = False

    def on_start(*_):
        if description.value.strip():
            guarded(lambda: search.start(description.value))

    def on_pick(*_):
        guarded(lambda: search.start_dialogue(int(picker.value)))

    def on_answer(*_):
        text = answer.value.strip()
        if not text or not search.started:
            return  # an empty submit (a double click after the turn cleared it) changes nothing

        def turn():
            search.answer(text, question=question.value or None)
            answer.value = ""
        guarded(turn)

    def on_undo(*_):
        guarded(search.undo, note="undoing...")

    def on_reset(*_):
        guarded(search.reset, note="resetting...")

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
        W.HTML(_STYLE),
        W.HBox([description, start_btn]),
        W.HBox([W.Label("or"), picker, pick_btn]),
        W.HBox([target_box, W.VBox([turns, query], layout=W.Layout(flex="1")), rank_img]),
        W.HTML("<b>K prompts and generated images</b>"), gen_box,
        W.HTML("<b>top-10 retrieved (click \"this is it\" under the one you were looking for)</b>"), top_box,
        found, question, answer, W.HBox([answer_btn, undo_btn, reset_btn, status]), error,
    ])
    app.add_class("dar-live")
    app.search = search
    app.render = render
    if dialog_idx is not None:
        guarded(lambda: search.start_dialogue(dialog_idx))
    else:
        render()
    return app
