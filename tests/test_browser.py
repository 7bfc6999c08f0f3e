"""The rendered book in a real headless Chromium with the network off: no failed request, no script
error, the explorer's slider changes the shown turn, and a figure is on the results page."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import pytest

#: Pages opened and checked for failed requests and script errors (relative to the HTML root).
PAGES = ("intro.html", "paper_scale.html", "notebooks/01_data.html", "notebooks/05_results_zero_shot.html",
         "notebooks/14_explorer.html", "notebooks/99_status.html")
#: The page holding an explorer (the lead's explorer chapter replaces the data chapter's browser).
EXPLORER_PAGE = "notebooks/14_explorer.html"
#: The page that must show Figure 3 and a text that identifies it (None: any rendered figure).
FIGURE3_PAGE = "notebooks/05_results_zero_shot.html"
FIGURE3_TEXT: str | None = "Figure 3"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(smoke_book, chromium):
    """Serve the smoke book's HTML (the session's one build, tests/conftest.py) on 127.0.0.1 from a thread."""
    result = smoke_book.result
    assert result.book_ok, result.book_error
    handler = functools.partial(_QuietHandler, directory=str(result.html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def _open(driver, url: str) -> None:
    driver.get_log("performance")  # drop earlier pages' events
    driver.get_log("browser")
    driver.get(url)
    driver.execute_async_script(  # let deferred scripts (MathJax, widgets) finish loading
        "var done = arguments[0]; if (document.readyState === 'complete') setTimeout(done, 1500);"
        " else window.addEventListener('load', function(){ setTimeout(done, 1500); });")


def _failures(driver, site: str) -> tuple[list[str], list[str]]:
    """Failed requests made by the book's pages (by URL) and SEVERE console entries."""
    failed, requests = [], {}
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        params = msg.get("params", {})
        if msg["method"] == "Network.requestWillBeSent":
            requests[params["requestId"]] = (params["request"]["url"], params.get("documentURL", ""))
        elif msg["method"] == "Network.loadingFailed" and not params.get("canceled"):
            url, document = requests.get(params["requestId"], ("?", ""))
            # Chromium's own background probes (no page of ours as document) are not the book's requests.
            if document.startswith(site) or url.startswith(site):
                failed.append(f"{params.get('errorText')}: {url}")
        elif msg["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            url = params["response"]["url"]
            if not url.endswith("/favicon.ico"):  # the browser's own probe, not a page request
                failed.append(f"HTTP {params['response']['status']} {url}")
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and "favicon.ico" not in e["message"]]
    return failed, errors


@pytest.mark.parametrize("page", PAGES)
def test_page_has_no_failed_request_and_no_script_error(site, driver, page):
    _open(driver, f"{site}/{page}")
    assert driver.title, f"{page} did not load"
    failed, errors = _failures(driver, site)
    assert failed == [], f"{page}: failed requests {failed}"
    assert errors == [], f"{page}: script errors {errors}"


def test_math_renders_offline(site, driver):
    _open(driver, f"{site}/intro.html")
    assert driver.execute_script("return document.querySelectorAll('mjx-container').length") > 0


def test_explorer_slider_changes_the_shown_turn(site, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open(driver, f"{site}/{EXPLORER_PAGE}")
    root = driver.find_element(By.CSS_SELECTOR, ".dar-explorer")
    label = root.find_element(By.CSS_SELECTOR, ".dar-turn-label")
    turns = root.find_elements(By.CSS_SELECTOR, ".dar-turns li")
    assert label.text == "round 0" and len(turns) == 1
    caption = turns[0].text
    query0 = root.find_element(By.CSS_SELECTOR, ".dar-query").text
    slider = root.find_element(By.CSS_SELECTOR, ".dar-slider")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", slider)
    slider.send_keys(Keys.ARROW_RIGHT)
    slider.send_keys(Keys.ARROW_RIGHT)
    assert label.text == "round 2"
    assert len(root.find_elements(By.CSS_SELECTOR, ".dar-turns li")) == 3
    shown = [li.text for li in root.find_elements(By.CSS_SELECTOR, ".dar-turns li")]
    assert shown[0] == caption and shown[1] != shown[2]
    # The explorer shows DAR's reformulated query, its generated images and the top-10 of that turn.
    query2 = root.find_element(By.CSS_SELECTOR, ".dar-query").text
    assert query0 and query2 and query2 != query0
    gen = root.find_elements(By.CSS_SELECTOR, ".dar-gen img")
    assert len(gen) >= 2
    # the K generated images sit side by side in one row, the top-10 in another, all at one size
    top_imgs = root.find_elements(By.CSS_SELECTOR, ".dar-top img")
    assert len(top_imgs) == 10
    for row in (gen, top_imgs):
        tops = {driver.execute_script("return arguments[0].getBoundingClientRect().top", im) for im in row}
        assert len(tops) == 1, tops
    widths = {round(driver.execute_script("return arguments[0].getBoundingClientRect().width", im))
              for im in gen + top_imgs}
    assert len(widths) == 1 and min(widths) >= 48, widths
    _, errors = _failures(driver, site)
    assert errors == []


def test_figure3_is_on_the_results_page(site, driver):
    from selenium.webdriver.common.by import By

    _open(driver, f"{site}/{FIGURE3_PAGE}")
    images = driver.find_elements(By.CSS_SELECTOR, ".cell_output img")
    loaded = [im for im in images if driver.execute_script("return arguments[0].naturalWidth", im) > 0]
    assert loaded, f"no rendered figure on {FIGURE3_PAGE}"
    if FIGURE3_TEXT:
        assert FIGURE3_TEXT in driver.find_element(By.TAG_NAME, "body").text
