"""The per-turn explorer as one self-contained HTML+JS block (no CDN, images as ``data:`` URIs).

Record schema (one :class:`DialogueRecord` per dialogue; plain dicts with the same keys work too):

- ``dialog_idx`` (int): index of the dialogue in its benchmark.
- ``target_id`` (int): corpus id of the target image.
- ``dialog`` (list[str]): the raw turns, caption first (``Dialogue.dialog``).
- ``target_image`` (PIL image, optional): shown beside the picker.
- ``benchmark`` (str, optional): shown in the picker.
- ``rounds`` (list of :class:`RoundRecord`, one per round shown, in order):

  - ``round_idx`` (int), ``query`` (str, the reformulated query S_t), ``prompts`` (list[str], the K
    diffusion prompts P_t,k), ``k_images`` (list[PIL image], the K generated images),
    ``top_ids`` (list[int], the top-10 corpus ids, best first), ``top_images`` (list[PIL image],
    same order), ``target_rank`` (float | None, 0-based expected rank of the target this round).

Every string reaches the page as JSON inside ``<script type="application/json">`` with ``<``, ``>``
and ``&`` escaped, and the script inserts it with ``textContent``: dialogue text can never become
markup or close the script.

Examples:
    >>> from PIL import Image
    >>> red = Image.new("RGB", (32, 32), "red")
    >>> turn = RoundRecord(round_idx=0, query="a red square", prompts=["a red square"], k_images=[red],
    ...                    top_ids=[0], top_images=[red], target_rank=0.0)
    >>> html = explorer_html([DialogueRecord(dialog_idx=0, target_id=0, dialog=["a red square"], rounds=[turn])])
    >>> html.startswith("<div") and "data:image/png;base64," in html  # show it with IPython.display.HTML
    True
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from dar_lib.errors import DataError


@dataclass
class RoundRecord:
    """What DAR did at one round of one dialogue (see the module docstring)."""

    round_idx: int
    query: str
    prompts: list[str] = field(default_factory=list)
    k_images: list[Any] = field(default_factory=list)
    top_ids: list[int] = field(default_factory=list)
    top_images: list[Any] = field(default_factory=list)
    target_rank: float | None = None


@dataclass
class DialogueRecord:
    """One dialogue and its rounds, as the explorer shows it (see the module docstring)."""

    dialog_idx: int
    target_id: int
    dialog: list[str]
    rounds: list[RoundRecord]
    target_image: Any = None
    benchmark: str = ""


def image_data_uri(image: Any) -> str:
    """A PIL image (or HxWx3 uint8 array) as a ``data:image/png;base64,...`` URI."""
    import numpy as np
    from PIL import Image

    if image is None:
        return ""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _get(obj: Any, key: str, default: Any = ...) -> Any:
    if isinstance(obj, Mapping):
        if key in obj:
            return obj[key]
    elif hasattr(obj, key):
        return getattr(obj, key)
    if default is ...:
        raise DataError(f"explorer record lacks {key!r}: {type(obj).__name__} {str(obj)[:80]}")
    return default


def records_payload(records: Sequence[Any]) -> list[dict[str, Any]]:
    """Turn records into the JSON the page script reads (images become ``data:`` URIs).

    Raises:
        DataError: a record lacks a required key, or a round's top ids and images disagree
            (the message names the dialogue and round).
    """
    out = []
    for rec in records:
        dialog_idx = int(_get(rec, "dialog_idx"))
        dialog = [str(t) for t in _get(rec, "dialog")]
        target_id = int(_get(rec, "target_id"))
        rounds = []
        for rnd in _get(rec, "rounds"):
            round_idx = int(_get(rnd, "round_idx"))
            top_ids = [int(i) for i in _get(rnd, "top_ids", [])]
            top_images = list(_get(rnd, "top_images", []))
            if top_images and len(top_images) != len(top_ids):
                raise DataError(f"dialogue {dialog_idx} round {round_idx}: {len(top_ids)} top ids but "
                                f"{len(top_images)} top images")
            rank = _get(rnd, "target_rank", None)
            rounds.append({
                "round_idx": round_idx,
                "turns": dialog[: round_idx + 1],
                "query": str(_get(rnd, "query")),
                "prompts": [str(p) for p in _get(rnd, "prompts", [])],
                "k_images": [image_data_uri(im) for im in _get(rnd, "k_images", [])],
                "top": [{"id": cid, "src": image_data_uri(top_images[j]) if top_images else "",
                         "target": cid == target_id} for j, cid in enumerate(top_ids)],
                "target_rank": None if rank is None else float(rank),
            })
        if not rounds:
            raise DataError(f"dialogue {dialog_idx}: explorer record has no rounds")
        out.append({
            "dialog_idx": dialog_idx,
            "benchmark": str(_get(rec, "benchmark", "") or ""),
            "target_id": target_id,
            "target_src": image_data_uri(_get(rec, "target_image", None)),
            "rounds": rounds,
        })
    return out


def _json_for_script(payload: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` survives literally."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


_CSS = """
#%(id)s{font-family:system-ui,sans-serif;font-size:14px;border:1px solid #ddd;border-radius:6px;padding:10px;
  margin:8px 0}
#%(id)s .dar-row{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start;margin:4px 0}
#%(id)s figure{margin:0;text-align:center;font-size:11px;width:%(px)dpx;flex:0 0 auto}
#%(id)s figcaption{overflow-wrap:anywhere}
#%(id)s img{width:%(px)dpx;height:%(px)dpx;image-rendering:pixelated;display:block;box-sizing:border-box;
  border:3px solid transparent}
#%(id)s .dar-gen,#%(id)s .dar-top{flex-wrap:nowrap;overflow-x:auto;padding:4px}
#%(id)s figure.dar-target img{border:3px solid #000;outline:3px solid #fff;box-shadow:0 0 0 6px #000}
#%(id)s .dar-query{background:#f5f7fa;padding:4px 8px;border-radius:4px}
#%(id)s ol.dar-turns{margin:4px 0 4px 20px;padding:0}
#%(id)s h5{margin:8px 0 2px 0;font-size:13px}
"""

_JS = r"""
(function(){
  var root = document.getElementById("%(id)s");
  var data = JSON.parse(document.getElementById("%(id)s-data").textContent);
  var pick = root.querySelector(".dar-pick"), slider = root.querySelector(".dar-slider");
  function el(tag, cls, text){
    var e=document.createElement(tag); if(cls){e.className=cls;} if(text!==undefined){e.textContent=text;} return e;
  }
  function fig(src, caption, cls){
    var f=el("figure", cls||""); var i=el("img"); i.src=src; i.alt=caption;
    f.appendChild(i); f.appendChild(el("figcaption","",caption)); return f;
  }
  data.forEach(function(d, i){
    var o=el("option","", (d.benchmark? d.benchmark+" ":"")+"dialogue "+d.dialog_idx); o.value=i; pick.appendChild(o);
  });
  function show(){
    var d = data[+pick.value], r = Math.min(+slider.value, d.rounds.length-1), rd = d.rounds[r];
    slider.max = d.rounds.length-1;
    root.querySelector(".dar-turn-label").textContent = "round " + rd.round_idx;
    var turns = root.querySelector(".dar-turns"); turns.textContent="";
    rd.turns.forEach(function(t){turns.appendChild(el("li","",t));});
    root.querySelector(".dar-query").textContent = rd.query;
    var rank = root.querySelector(".dar-rank");
    rank.textContent = rd.target_rank===null ? "" : "target rank this round: " + (rd.target_rank+1);
    var gen = root.querySelector(".dar-gen"); gen.textContent="";
    rd.k_images.forEach(function(src,k){
      gen.appendChild(fig(src, rd.prompts[k]!==undefined? "k="+(k+1)+": "+rd.prompts[k] : "k="+(k+1)));
    });
    var top = root.querySelector(".dar-top"); top.textContent="";
    rd.top.forEach(function(t,j){
      top.appendChild(fig(t.src, "#"+(j+1)+(t.target?" target":"")+" (id "+t.id+")", t.target?"dar-target":""));
    });
    var tgt = root.querySelector(".dar-target-img"); tgt.textContent="";
    if(d.target_src){tgt.appendChild(fig(d.target_src, "target (id "+d.target_id+")", "dar-target"));}
  }
  pick.addEventListener("change", function(){slider.value=0; show();});
  slider.addEventListener("input", show);
  slider.addEventListener("change", show);
  show();
})();
"""

_BODY = """<div id="%(id)s" class="dar-explorer">
<style>%(css)s</style>
<div class="dar-row"><label>dialogue <select class="dar-pick"></select></label>
<label>turn <input class="dar-slider" type="range" min="0" max="%(max)d" step="1" value="0"></label>
<strong class="dar-turn-label">round 0</strong> <span class="dar-rank"></span></div>
<div class="dar-row"><div class="dar-target-img"></div><div style="flex:1">
<h5>dialogue so far</h5><ol class="dar-turns" start="0"></ol>
<h5>query S<sub>t</sub></h5><div class="dar-query"></div></div></div>
<h5>generated images</h5><div class="dar-row dar-gen"></div>
<h5>top-10 retrieved (target outlined black and white)</h5><div class="dar-row dar-top"></div>
<script type="application/json" id="%(id)s-data">%(data)s</script>
<script>%(js)s</script>
</div>"""


_CALLS = itertools.count()

#: Generated and retrieved images are drawn at one size (CSS pixels); ten fit one row of a book page.
IMAGE_PX = 64


def explorer_html(records: Sequence[Any], element_id: str | None = None) -> str:
    """Self-contained HTML+JS explorer: a dialogue picker and a turn slider.

    Args:
        records: :class:`DialogueRecord` objects (or dicts with the same keys), see the module docstring.
        element_id: id of the root element (default: a hash of the content and a per-process call
            number, so several explorers, the same records twice included, can share a page, and
            a fresh kernel running the same cells writes the same output).

    Returns:
        An HTML string; show it with ``IPython.display.HTML``.

    Raises:
        DataError: no records, or a record is malformed.
    """
    payload = records_payload(records)
    if not payload:
        raise DataError("explorer_html: no dialogue records to show")
    data = _json_for_script(payload)
    if element_id is None:
        # Content hash plus a call counter: showing the same records twice gives two elements (the
        # hash alone made the second explorer fill the first one), and a fresh kernel that runs
        # the same cells still writes the same page.
        element_id = f"dar-explorer-{hashlib.sha256(data.encode()).hexdigest()[:10]}-{next(_CALLS)}"
    max_round = max(len(d["rounds"]) for d in payload) - 1
    subs = {"id": element_id, "max": max_round, "px": IMAGE_PX}
    return _BODY % {**subs, "css": _CSS % subs, "data": data, "js": _JS % subs}


def turn_record(result, pipe, bench, target_id: int | None = None) -> RoundRecord:
    """The explorer's record of one :class:`~dar_lib.pipeline.TurnResult` (target rank when ``target_id`` is given)."""
    rank = None
    if target_id is not None and pipe.corpus_emb is not None:
        rank = float(pipe.target_ranks(result.fused_emb[None], [target_id])[0])
    top = [int(i) for i in result.top_ids]
    return RoundRecord(round_idx=result.round_idx, query=result.query, prompts=list(result.prompts),
                       k_images=list(result.images), top_ids=top, top_images=bench.corpus_images(top),
                       target_rank=rank)
