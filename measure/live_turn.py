"""Live-session turn latency: where a turn of ``dar explore`` spends its time, and the thread setting's share.

1. Median wall time of one toy generation call (K = 3 images) with torch on 2 intra-op threads and
   on 1 (the live app's setting, :data:`dar_lib.live.LIVE_TORCH_THREADS`), over ``--calls`` calls.
2. Median wall time of one live turn driven through the app's widgets (answer typed, Enter: R1, R2,
   generation, encoding, ranking against the default 10,000-image toy corpus, and the widget
   update with its PNGs), over ``--turns`` turns, with the pipeline's own per-stage medians.

3. With ``--browser``: the median wall time of a turn as a person meets it (issue 31): ``dar explore``'s
   notebook served by Voila on 127.0.0.1 (:func:`dar_lib.live_server.voila_server`, a fresh cache so
   every turn generates), headless Chromium at 1400x900 picks benchmark dialogues, types each answer
   of a perfect answerer and presses Enter; a turn's time runs from Enter until the page says
   ``round N done``. Needs Selenium and Chromium (``make browser-deps``).

Goal (issue 17): a live toy turn <= 1 s median on a quiet 2-core machine. Last line: a JSON object.

    python measure/live_turn.py [--turns 10] [--calls 6] [--browser]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def _find(widget, cls):
    out = [widget] if cls in getattr(widget, "_dom_classes", ()) else []
    for child in getattr(widget, "children", ()):
        out += _find(child, cls)
    return out




def browser_turns(benchmark: str, turns: int, encoder: str) -> dict:
    """Median turn time in headless Chromium against Voila (see the module docstring, item 3)."""
    import tempfile
    from pathlib import Path

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    from dar_lib.benchmarks.toyworld import ToyAnswerer
    from dar_lib.live_server import notebook_text, toy_app, voila_server
    from dar_lib.testing import free_port, headless_chromium, requests_elsewhere

    def text(drv, css):
        return drv.execute_script(f"var e=document.querySelector({css!r}); return e ? e.innerText : ''")

    def wait_for(drv, predicate, what, timeout=300.0, poll=0.02):
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            if predicate():
                return
            time.sleep(poll)
        raise RuntimeError(f"timed out waiting for {what}; status: {text(drv, '.dar-status')!r}")

    cache_before = os.environ.get("DAR_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="dar-live-turn-") as tmp:
        tmp = Path(tmp)
        os.environ["DAR_CACHE_DIR"] = str(tmp / "cache")  # fresh: no generated image is cached
        t0 = time.perf_counter()
        bench = toy_app(benchmark, encoder=encoder).search.bench  # indexes the corpus into that cache
        index_s = time.perf_counter() - t0
        notebook = tmp / "dar_live.ipynb"
        notebook.write_text(notebook_text(benchmark, smoke=False, encoder=encoder))
        with voila_server(notebook, free_port(), env=dict(os.environ), start_timeout_s=300) as url:
            drv = headless_chromium(tmp / "profile")
            try:
                drv.set_window_size(1400, 900)
                t0 = time.perf_counter()
                drv.get(url)
                wait_for(drv, lambda: drv.find_elements(By.CSS_SELECTOR, ".dar-pick"), "the app")
                page_s = time.perf_counter() - t0
                walls, dialog = [], 0
                n_picker = len(Select(drv.find_element(By.CSS_SELECTOR, ".dar-picker select")).options)
                while len(walls) < turns:
                    if dialog == n_picker:
                        raise SystemExit(f"--turns {turns}: the page offers {n_picker} dialogues of 3 turns each")
                    d = bench.dialogues[dialog]
                    answerer = ToyAnswerer(bench.meta["scenes"][d.target_id])
                    Select(drv.find_element(By.CSS_SELECTOR, ".dar-picker select")).select_by_index(dialog)
                    drv.find_element(By.CSS_SELECTOR, ".dar-pick").click()
                    # the status said "round 3 done" (or nothing) before: "round 0 done" is this dialogue's
                    wait_for(drv, lambda: "round 0 done" in text(drv, ".dar-status"), f"dialogue {dialog}")
                    for r in range(1, 4):
                        question = text(drv, ".dar-question").removeprefix("question:").strip()
                        field = drv.find_element(By.CSS_SELECTOR, ".dar-answer input")
                        field.send_keys(answerer.answer(question))  # typing is not the turn's time
                        t = time.perf_counter()
                        field.send_keys(Keys.ENTER)
                        wait_for(drv, lambda: f"round {r} done" in text(drv, ".dar-status"), f"round {r}")
                        walls.append(time.perf_counter() - t)
                        if len(walls) == turns:
                            break
                    dialog += 1
                elsewhere = requests_elsewhere(drv)
            finally:
                drv.quit()
                if cache_before is None:
                    os.environ.pop("DAR_CACHE_DIR", None)
                else:
                    os.environ["DAR_CACHE_DIR"] = cache_before
    turn = statistics.median(walls)
    print(f"live turn in the browser: median {turn:.3f} s, max {max(walls):.3f} s over {len(walls)} turns")
    return {"browser_index_s": round(index_s, 1), "browser_page_s": round(page_s, 1),
            "browser_turn_median_s": round(turn, 3), "browser_turn_max_s": round(max(walls), 3),
            "browser_turns": len(walls), "browser_turn_goal_met": bool(turn <= 1.0),
            "requests_elsewhere": len(elsewhere)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--benchmark", default="toy-chatgpt")
    ap.add_argument("--browser", action="store_true",
                    help="also time turns in headless Chromium against Voila (Selenium and Chromium needed)")
    ap.add_argument("--encoder", default=None, help="the toy encoder role the live search reads with "
                    "(default: dar explore's, live_server.DEFAULT_ENCODER)")
    args = ap.parse_args()
    if args.encoder is None:
        from dar_lib.live_server import DEFAULT_ENCODER

        args.encoder = DEFAULT_ENCODER

    import torch

    from dar_lib.benchmarks.toyworld import ToyAnswerer
    from dar_lib.live_server import toy_app

    t0 = time.perf_counter()
    app = toy_app(args.benchmark, encoder=args.encoder)  # sets the live thread count
    startup = time.perf_counter() - t0
    pipe, bench = app.search.pipe, app.search.bench
    if pipe.store is not None:
        pipe.generator = pipe.generator.uncached()  # no image cache: every turn generates, as a new search does

    gen = {}
    prompt = ["a red circle in the top left on a blue background"] * pipe.k_images
    for n in (2, 1):
        torch.set_num_threads(n)
        walls = []
        for i in range(args.calls):
            t = time.perf_counter()
            pipe.generator.generate(prompt, seeds=[1000 + i * 7 + j for j in range(len(prompt))])
            walls.append(time.perf_counter() - t)
        gen[n] = statistics.median(walls)
        print(f"generation, K = {len(prompt)}, {n} torch thread(s): median {gen[n]:.3f} s")
    from dar_lib.live import LIVE_TORCH_THREADS

    torch.set_num_threads(LIVE_TORCH_THREADS)

    walls, stages = [], {}
    done = 0
    while done < args.turns:
        d = bench.dialogues[done % len(bench.dialogues)]
        app.search.start_dialogue(done % len(bench.dialogues))
        app.render()
        answerer = ToyAnswerer(bench.meta["scenes"][d.target_id])
        for _ in range(min(3, args.turns - done)):
            question = app.search.session.pending_question  # the widget shows it as HTML
            t = time.perf_counter()
            _find(app, "dar-answer")[0].value = answerer.answer(question)  # as Enter does
            walls.append(time.perf_counter() - t)
            for k, v in app.search.result.timings.items():
                stages.setdefault(k, []).append(v)
            done += 1
    turn = statistics.median(walls)
    print(f"live turn through the widgets: median {turn:.3f} s over {len(walls)} turns")
    for k, v in stages.items():
        print(f"  {k}: median {statistics.median(v):.4f} s")
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu, load {os.getloadavg()[0]:.2f}",
        "startup_s": round(startup, 1),
        "generation_2_threads_median_s": round(gen[2], 3),
        "generation_1_thread_median_s": round(gen[1], 3),
        "live_turn_median_s": round(turn, 3),
        **{f"stage_{k.split()[0].lower()}_median_s": round(statistics.median(v), 4) for k, v in stages.items()},
        "turn_goal_s": 1.0,
        "turn_goal_met": bool(turn <= 1.0),
        "turns": len(walls),
    }
    if args.browser:
        figures.update(browser_turns(args.benchmark, args.turns, args.encoder))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
