"""The live explorer with a real kernel in headless Chromium: Voila serves ``dar explore``'s notebook
on 127.0.0.1, a person types a description and answers four questions with Enter (an "only one" answer and
a negation among them), marks the target, undoes, resets; no request leaves the machine."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from dar_lib.testing import free_port

pytestmark = pytest.mark.slow

#: Where the screenshots of turn 1 and turn 3 are copied when set (they always land in the test's tmp dir).
SCREENSHOT_ENV = "DAR_LIVE_SCREENSHOTS"




@pytest.fixture(scope="module")
def live_url(tmp_path_factory, chromium):
    """``dar explore``'s notebook (smoke world) served by Voila on 127.0.0.1, with a private cache; the
    server and its kernel go away however the module ends, a failed start included."""
    from dar_lib import live_server

    folder = tmp_path_factory.mktemp("live")
    notebook = folder / "dar_live.ipynb"
    notebook.write_text(live_server.notebook_text(live_server.DEFAULT_BENCHMARK, smoke=True))
    env = dict(os.environ, DAR_CACHE_DIR=str(tmp_path_factory.mktemp("live-cache")))
    with live_server.voila_server(notebook, free_port(), env=env) as url:
        yield url


def _wait(drv, predicate, what: str, timeout: float = 120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # an element re-rendered between finding and reading it
            pass
        time.sleep(0.25)
    status = drv.execute_script("var s=document.querySelector('.dar-status');return s?s.innerText:'(none)'")
    raise AssertionError(f"timed out waiting for {what}; status: " + status)


#: How a person answers, by what the question asks (the target: a large black square in the bottom
#: left on orange, alone): "only one object" for a count or other objects, a negation once that is said.
ONLY_ONE = "there is only one object, the black square"
NEGATIONS = ("no, there is nothing else", "nope")
BY_SLOT = {"size": "large", "background": "orange", "position": "bottom left", "color": "black",
           "shape": "square"}


def answer_as_a_person(question: str, said: list[str]) -> str:
    from dar_lib.benchmarks.toyworld.facts import question_slot

    slot = question_slot(question)[0]
    if slot in BY_SLOT:
        return BY_SLOT[slot]
    if ONLY_ONE not in said:
        return ONLY_ONE
    return NEGATIONS[0] if NEGATIONS[0] not in said else NEGATIONS[1]


def _count(drv, css: str) -> int:
    return drv.execute_script(f"return document.querySelectorAll({css!r}).length")


def _text(drv, css: str) -> str:
    return drv.execute_script(f"var e=document.querySelector({css!r}); return e ? e.innerText : ''")


def test_a_person_searches_in_the_browser(live_url, driver, tmp_path, requests_elsewhere):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from dar_lib import profiles

    k = profiles.parameters("toy", True)["k_images"]
    driver.set_window_size(1400, 900)
    driver.get(live_url)
    description = _wait(driver, lambda: driver.find_element(By.CSS_SELECTOR, ".dar-description input"),
                        "the description field", timeout=240)
    description.send_keys("a black square in the bottom left on an orange background" + Keys.ENTER)
    shots = {}

    def turn_done(round_idx: int) -> None:
        _wait(driver, lambda: f"round {round_idx} done" in _text(driver, ".dar-status"), f"round {round_idx}")
        assert _count(driver, ".dar-gen img") == k
        assert _count(driver, ".dar-top .dar-candidate img") == 10
        assert _count(driver, ".dar-turns-box li") == round_idx + 1
        assert _text(driver, ".dar-error-box") == ""

    turn_done(0)
    shots[1] = tmp_path / "live_turn1.png"
    driver.save_screenshot(str(shots[1]))
    assert "Diffusion Augmented Retrieval" in _text(driver, ".dar-live h3")  # the first screen says what this is
    assert _text(driver, ".dar-reader") == "toy:clip-full"  # the best reader, named
    answers = []
    for round_idx in (1, 2, 3, 4):
        question = _text(driver, ".dar-question")  # shown as text, not an editable field
        assert question.startswith("question:") and question.endswith("?"), question
        question = question.removeprefix("question:").strip()
        assert question not in [q for q, _ in answers], f"asked twice: {question}"
        answer = answer_as_a_person(question, [a for _, a in answers])
        field = driver.find_element(By.CSS_SELECTOR, ".dar-answer input")
        # the newest question and the answer field are in view without scrolling (1400 x 900)
        assert driver.execute_script("return window.scrollY") == 0
        assert driver.execute_script("return arguments[0].getBoundingClientRect().bottom", field) <= \
            driver.execute_script("return window.innerHeight")
        field.send_keys(answer + Keys.ENTER)  # Enter submits: no button is clicked
        turn_done(round_idx)
        answers.append((question, answer))
        assert answer in driver.find_elements(By.CSS_SELECTOR, ".dar-turns-box li")[-1].text
        if round_idx == 2:
            shots[3] = tmp_path / "live_turn3.png"
            driver.save_screenshot(str(shots[3]))
    said = [a for _, a in answers]
    assert ONLY_ONE in said and any(a in NEGATIONS for a in said), answers  # both kinds were typed
    turns = driver.find_elements(By.CSS_SELECTOR, ".dar-turns-box li")
    for turn in turns[1:]:  # every answer was used or acknowledged, none flagged
        assert "not understood" not in turn.text and ("read:" in turn.text or "already known:" in turn.text), \
            turn.text
    query = _text(driver, ".dar-query-box")
    assert "a single large black square" in query and " and " not in query, query  # no phantom second object
    # an empty answer is a one-line message, not silence and not a Python error
    driver.find_element(By.CSS_SELECTOR, ".dar-answer-btn").click()
    refusal = _wait(driver, lambda: _text(driver, ".dar-error-box"), "the empty-answer message")
    assert refusal.startswith("type an answer first") and "Error" not in refusal
    driver.find_elements(By.CSS_SELECTOR, ".dar-mark button, button.dar-mark")[0].click()
    found = _wait(driver, lambda: _text(driver, ".dar-found-box"), "the marked target")
    assert found.startswith("found in 4 turns: you marked image") and "at round 4" in found
    assert _count(driver, ".dar-top .dar-marked img") == 1  # the marked image is outlined
    assert "the image you marked: rank" in _text(driver, ".dar-turns-box")  # its rank per round, as a number
    assert not driver.find_element(By.CSS_SELECTOR, ".dar-answer input").is_enabled()  # over until undo or reset
    shots[4] = tmp_path / "live_found.png"
    driver.save_screenshot(str(shots[4]))
    driver.find_element(By.CSS_SELECTOR, ".dar-undo").click()  # takes the mark back: the search goes on
    _wait(driver, lambda: not _text(driver, ".dar-found-box"), "the mark undone")
    _wait(driver, lambda: driver.find_element(By.CSS_SELECTOR, ".dar-answer input").is_enabled(), "answer enabled")
    driver.find_element(By.CSS_SELECTOR, ".dar-reset").click()
    _wait(driver, lambda: _count(driver, ".dar-top .dar-candidate img") == 0, "the reset")
    assert driver.find_element(By.CSS_SELECTOR, ".dar-description input").get_attribute("value") == ""
    assert requests_elsewhere(driver) == []  # no request left the machine (fonts, scripts, anything)
    if os.environ.get(SCREENSHOT_ENV):
        out = Path(os.environ[SCREENSHOT_ENV])
        out.mkdir(parents=True, exist_ok=True)
        for path in shots.values():
            shutil.copy(path, out / path.name)
