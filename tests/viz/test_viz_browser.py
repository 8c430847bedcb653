"""The viewer page in a real headless browser (Debian's chromium, driven by playwright).

Needs ``apt-get install -y chromium`` and ``pip install playwright`` (only the Python
package: the system chromium is used, nothing is downloaded). Skipped with the reason when
either is missing.
"""

import shutil
from pathlib import Path

import pytest
from viz_helpers import tiny_model, token_sample

from longpos.viz.positions import render_viewer_html, write_position_viewer

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    exe = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


def open_page(browser, path: Path, viewport=None):
    """Open ``path``; returns (page, requested URLs, errors)."""
    page = browser.new_page(viewport=viewport or {"width": 1100, "height": 800})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("#plot circle")
    return page, requests, errors


def circle_ys(page) -> list[str]:
    """The points' SVG y coordinates in token order (marked points are drawn last)."""
    pairs = page.eval_on_selector_all(
        "#plot circle", "cs => cs.map(c => [+c.getAttribute('data-i'), c.getAttribute('cy')])"
    )
    return [y for _, y in sorted(pairs)]


@pytest.fixture(scope="module")
def model_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("viewer") / "positions.html"
    return write_position_viewer(tiny_model(), token_sample(), out, title="tiny repo")


@pytest.fixture(scope="module")
def outlier_page(tmp_path_factory):
    """Hand-made data: a ramp with one far outlier (head 0) and a flat head (head 1)."""
    n = 40
    ramp = [float(i) for i in range(n)]
    ramp[7] = 1000.0
    data = {
        "title": "outlier", "subtitle": "", "tokens": [f"w{i}" for i in range(n)],
        "ids": list(range(n)), "marks": {"value": [3, 4], "query": [38, 39]},
        "layers": [
            {"index": 0, "technique": "rope", "learned": False, "heads": None},
            {"index": 1, "technique": "repo", "learned": True, "heads": [ramp, [2.0] * n],
             "head_label": "kv head"},
        ],
        "default_layer": 1, "separate_tokens": True, "task": None,
    }  # fmt: skip
    out = tmp_path_factory.mktemp("viewer") / "outlier.html"
    out.write_text(render_viewer_html(data), encoding="utf-8")
    return out


def test_no_network_and_no_errors(browser, model_page):
    page, requests, errors = open_page(browser, model_page)
    page.select_option("#layer", "2")
    page.click(".tok[data-i='5']")
    page.click("#focus")
    page.wait_for_timeout(100)
    assert requests == [model_page.resolve().as_uri()]
    assert errors == []
    page.close()


def test_layer_and_head_selection_change_the_plot(browser, model_page):
    page, _, _ = open_page(browser, model_page)
    plot = page.locator("#plot")
    assert plot.get_attribute("data-layer") == "1"  # the first RePo layer by default
    before = circle_ys(page)
    assert len(before) == len(token_sample().prompt_ids)
    page.select_option("#head", "1")
    assert plot.get_attribute("data-head") == "1"
    after_head = circle_ys(page)
    assert after_head != before
    page.select_option("#layer", "0")  # a RoPE layer: the integer index, one "head"
    assert plot.get_attribute("data-layer") == "0"
    assert page.locator("#head option").count() == 1 and page.locator("#head").is_disabled()
    index_ys = [float(y) for y in circle_ys(page)]
    assert index_ys == sorted(index_ys, reverse=True)  # y = index: rising, so SVG y falls
    assert index_ys != [float(y) for y in after_head]
    page.select_option("#layer", "2")
    assert plot.get_attribute("data-layer") == "2" and circle_ys(page) != before
    page.close()


def test_clicking_a_token_highlights_it_everywhere(browser, model_page):
    page, _, _ = open_page(browser, model_page)
    page.click(".tok[data-i='13']")
    assert "sel" in page.get_attribute(".tok[data-i='13']", "class")
    assert "nb" in page.get_attribute(".tok[data-i='12']", "class")
    assert "sel" in page.get_attribute("#plot circle[data-i='13']", "class")
    assert page.locator("#plot circle.sel").count() == 1
    assert "#13" in page.inner_text("#info") and "value" in page.inner_text("#info")
    # the highlight survives a layer change, and clicking a point moves it
    page.select_option("#layer", "2")
    assert "sel" in page.get_attribute("#plot circle[data-i='13']", "class")
    page.locator("#plot circle[data-i='30']").dispatch_event("click")
    assert "sel" in page.get_attribute(".tok[data-i='30']", "class")
    assert "sel" not in page.get_attribute(".tok[data-i='13']", "class")
    page.close()


def test_marks_are_shown(browser, model_page):
    page, _, _ = open_page(browser, model_page)
    assert "m-value" in page.get_attribute(".tok[data-i='13']", "class")
    assert "m-query" in page.get_attribute(".tok[data-i='44']", "class")
    assert "m-distractor" in page.get_attribute("#plot circle[data-i='25']", "class")
    assert "value" in page.inner_text("#legend") and "query" in page.inner_text("#legend")
    page.close()


def test_focus_mode_zooms_past_outliers(browser, outlier_page):
    page, _, errors = open_page(browser, outlier_page)
    plot = page.locator("#plot")
    full = float(plot.get_attribute("data-ymin")), float(plot.get_attribute("data-ymax"))
    assert full[1] > 1000  # the outlier sets the full range
    page.click("#focus")
    assert page.get_attribute("#focus", "aria-pressed") == "true"
    focus = float(plot.get_attribute("data-ymin")), float(plot.get_attribute("data-ymax"))
    assert focus[1] < 50 and focus[0] <= 0 and focus[1] >= 39  # inliers 0..39 (+5% pad)
    assert "clip" in page.get_attribute("#plot circle[data-i='7']", "class")  # drawn hollow
    assert "focus" in page.inner_text("#yrange")
    page.click("#focus")
    assert float(plot.get_attribute("data-ymax")) == full[1]
    # a flat head gets a non-degenerate axis
    page.select_option("#head", "1")
    lo, hi = float(plot.get_attribute("data-ymin")), float(plot.get_attribute("data-ymax"))
    assert lo < 2.0 < hi
    assert errors == []
    page.close()


def test_phone_sized_screen(browser, model_page):
    page, _, errors = open_page(browser, model_page, viewport={"width": 375, "height": 740})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375  # no horizontal scrolling
    box = page.locator("#plot").bounding_box()
    assert box is not None and box["width"] <= 375
    page.click(".tok[data-i='3']")
    assert "sel" in page.get_attribute("#plot circle[data-i='3']", "class")
    assert errors == []
    page.close()


def test_text_lines_and_highlight_after_a_newline(browser, tmp_path):
    path = write_position_viewer(tiny_model(vocab_size=259), "ab\ncd\nef", tmp_path / "t.html")
    page, requests, errors = open_page(browser, path)
    assert page.locator("#tokens br").count() == 2  # the text keeps its lines
    page.click(".tok[data-i='7']")  # "f", after two line breaks
    assert page.locator(".tok.sel").get_attribute("data-i") == "7"
    assert "sel" in page.get_attribute("#plot circle[data-i='7']", "class")
    assert page.locator(".tok.nb").count() == 2  # neighbours 5 and 6 (none after the end)
    assert requests == [path.resolve().as_uri()] and errors == []
    page.close()


def test_query_scale_note_and_trend_line(browser, model_page):
    """The query token has its own line, the scale is explained, the trend line follows the
    data (slope 1 on an index layer)."""
    page, _, errors = open_page(browser, model_page)
    assert page.locator("[data-testid=query-line]").count() == 1
    note = page.locator("[data-testid=scale]").inner_text()
    assert "Position scale" in note and "query token" in note
    assert page.locator("[data-testid=fit]").count() == 1
    page.select_option("#layer", "0")  # layer 0 is RoPE: the integer index
    assert "trend: 1 position per token" in page.locator("#stats").inner_text()
    assert not errors
