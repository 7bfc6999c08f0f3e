"""Tests for the static explorer: self-contained HTML, escaped dialogue text, schema errors."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from dar_lib.errors import DataError
from dar_lib.explore import DialogueRecord, RoundRecord, explorer_html, image_data_uri, records_payload

EVIL = '</script><script>alert("x")</script> & <b>bold</b>'


def _img(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8))


def _records(n_dialogues: int = 2, n_rounds: int = 3) -> list[DialogueRecord]:
    out = []
    for d in range(n_dialogues):
        dialog = [f"caption {d} {EVIL}"] + [f"question {r}? answer {r}" for r in range(1, n_rounds)]
        rounds = [RoundRecord(round_idx=r, query=f"query {d}/{r} {EVIL}", prompts=[f"p{k}" for k in range(2)],
                              k_images=[_img(10 * k) for k in range(2)], top_ids=list(range(10)),
                              top_images=[_img(i) for i in range(10)], target_rank=r)
                  for r in range(n_rounds)]
        out.append(DialogueRecord(dialog_idx=d, target_id=3, dialog=dialog, rounds=rounds, target_image=_img(3)))
    return out


def _payload(html: str):
    m = re.search(r'<script type="application/json" id="([^"]+)-data">(.*?)</script>', html, re.S)
    assert m, "the data block is missing"
    return m.group(1), json.loads(m.group(2))


def test_html_is_self_contained():
    html = explorer_html(_records())
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<script[^>]+src=", html)
    assert 'type="range"' in html and "dar-turn-label" in html


def test_dialogue_text_cannot_escape_the_script_or_become_markup():
    html = explorer_html(_records())
    # Only the explorer's own two scripts close: the evil text never closes one early.
    assert html.count("</script>") == 2
    assert "<b>bold</b>" not in html and 'alert("x")</script>' not in html
    element_id, data = _payload(html)
    # ...and the JSON still decodes to the exact original strings.
    assert data[0]["rounds"][1]["query"] == f"query 0/1 {EVIL}"
    assert data[0]["rounds"][2]["turns"][0] == f"caption 0 {EVIL}"
    assert f'id="{element_id}"' in html
    # The script inserts text with textContent, never innerHTML.
    assert "innerHTML" not in html


def test_payload_contents_per_round():
    data = records_payload(_records(n_dialogues=1, n_rounds=3))
    d = data[0]
    assert [r["round_idx"] for r in d["rounds"]] == [0, 1, 2]
    assert [len(r["turns"]) for r in d["rounds"]] == [1, 2, 3]  # the dialogue so far
    assert len(d["rounds"][0]["k_images"]) == 2 and len(d["rounds"][0]["top"]) == 10
    assert [t["target"] for t in d["rounds"][0]["top"]] == [i == 3 for i in range(10)]
    png = base64.b64decode(d["rounds"][0]["top"][5]["src"].split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).getpixel((0, 0)) == (5, 5, 5)
    assert d["target_src"].startswith("data:image/png;base64,")


def test_output_is_deterministic_and_ids_distinct():
    a, b = explorer_html(_records()), explorer_html(_records())
    id_a, id_b = (re.search(r'<div id="([^"]+)"', h).group(1) for h in (a, b))
    assert id_a != id_b  # the same records shown twice: two elements, not one filled twice
    assert a.replace(id_a, "X") == b.replace(id_b, "X")
    c = explorer_html(_records(n_rounds=2))
    assert _payload(a)[0] != _payload(c)[0]


def test_dict_records_and_missing_images_work():
    rec = {"dialog_idx": 4, "target_id": 1, "dialog": ["a cat"],
           "rounds": [{"round_idx": 0, "query": "a cat"}]}
    data = records_payload([rec])
    assert data[0]["rounds"][0]["k_images"] == [] and data[0]["target_src"] == ""
    assert image_data_uri(np.zeros((4, 4, 3), dtype=np.uint8)).startswith("data:image/png;base64,")


def test_bad_records_are_named():
    with pytest.raises(DataError, match="no dialogue records"):
        explorer_html([])
    with pytest.raises(DataError, match="lacks 'query'"):
        records_payload([{"dialog_idx": 0, "target_id": 1, "dialog": ["x"], "rounds": [{"round_idx": 0}]}])
    bad = _records(1)[0]
    bad.rounds[1].top_images = bad.rounds[1].top_images[:3]
    with pytest.raises(DataError, match="dialogue 0 round 1: 10 top ids but 3 top images"):
        records_payload([bad])
    with pytest.raises(DataError, match="dialogue 7: explorer record has no rounds"):
        records_payload([{"dialog_idx": 7, "target_id": 1, "dialog": ["x"], "rounds": []}])


def test_static_page_draws_images_at_one_size_on_one_row_with_a_contrasting_target_mark():
    page = explorer_html(_records())
    css = page[page.index("<style>"):page.index("</style>")]
    img_widths = set(re.findall(r"img\{[^}]*width:(\d+)px", css))
    assert len(img_widths) == 1, img_widths  # generated and top-10 images: one size
    top_rule = next(line for line in css.splitlines() if ".dar-top{" in line)
    assert "flex-wrap:nowrap" in top_rule  # the ten candidates stay on one row
    target_rule = next(line for line in css.splitlines() if "figure.dar-target img" in line)
    # a black and a white ring: one of them contrasts with any background colour
    assert "#000" in target_rule and "#fff" in target_rule
