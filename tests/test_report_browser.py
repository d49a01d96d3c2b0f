"""The report page in a real headless Chromium: it opens from disk with no console error, every image decodes,
the words are coloured (red positive, blue negative) and separated by spaces, and the page is not blank.

The browser helpers (``browser_available``, ``chromium``, ``open_in_browser``, the module-scoped ``browser``
fixture) are meant for reuse by other page tests, e.g. the CLI's:
``from test_report_browser import chromium, open_in_browser``.
Skipped only when ``chromium`` / ``chromedriver`` are not installed.
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WINDOW = (1280, 1000)


def browser_available() -> bool:
    """Whether a Chromium binary and chromedriver are on PATH (Debian: /usr/bin/chromium, /usr/bin/chromedriver)."""
    return bool(CHROMIUM and CHROMEDRIVER)


needs_browser = pytest.mark.skipif(not browser_available(),
                                   reason="chromium and/or chromedriver are not installed (apt-get install "
                                          "chromium chromium-driver)")


@contextlib.contextmanager
def chromium(window=WINDOW):
    """A headless Chromium WebDriver with browser console logging on, in a throw-away profile; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            driver.set_page_load_timeout(30)
            yield driver
        finally:
            driver.quit()


def open_in_browser(driver, path) -> list[dict]:
    """Load ``path`` (a local HTML file) as ``file://``, wait until it and its images are loaded (those with
    ``loading="lazy"`` only once the browser fetches them), and return the browser console entries it produced
    (``{"level": "SEVERE", "message": ...}``; earlier pages' entries are drained first)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(Path(path).resolve().as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && [...document.images].every(i => i.complete || "
        "i.loading === 'lazy')"))
    return driver.get_log("browser")


def full_page_screenshot(driver) -> bytes:
    """PNG of the whole page: the window is resized to the document's height first."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WINDOW[0], min(int(height) + 150, 16000))
    try:
        return driver.get_screenshot_as_png()
    finally:
        driver.set_window_size(*WINDOW)


@pytest.fixture(scope="module")
def browser():
    if not browser_available():
        pytest.skip("chromium and/or chromedriver are not installed")
    with chromium() as driver:
        yield driver


# ---------------------------------------------------------------------------------------------- the page

PROMPT = "a red circle and a blue square"
# one clearly positive word (red) and one clearly negative word (and)
VALUES = np.array([0.02, 0.31, 0.12, -0.09, -0.01, 0.18, 0.07])
BASE = 0.41


def build_report(path: Path) -> Path:
    """A realistic one-prompt report from ShapesWorld renders and made-up values, written to ``path``."""
    import shap

    from captum_diffusion import report
    from captum_diffusion.metrics import seed_agreement
    from captum_diffusion.shapes_world import render
    from captum_diffusion.words import word_labels

    words = PROMPT.split()
    labels = word_labels(words)
    image = render(PROMPT, generator=0).image
    rng = np.random.default_rng(0)
    explanation = shap.Explanation(values=VALUES, base_values=BASE, data=np.array(words, dtype=object),
                                   feature_names=labels)
    methods = {"shap-exact": VALUES, "lime": VALUES * 0.8 + 0.01, "captum-shapley_sampling": VALUES + 0.02}
    entries = [("", BASE, render("a blue square", generator=3).image)]
    entries += [(" ".join(words[:k]), BASE + 0.08 * k, render(PROMPT, generator=k).image) for k in (2, 3, 7)]
    maps = rng.random((len(words), 16, 16)) * np.linspace(0.2, 1.0, len(words))[:, None, None]
    segments = np.zeros((64, 64), dtype=np.int64)
    segments[:, 32:] = 1
    segments[32:, :] += 2
    seeds = np.stack([VALUES, VALUES + rng.normal(0, 0.05, VALUES.size), VALUES[::-1]])
    sections = [
        ("How to read this report", report.how_to_read_html(
            "CLIP cosine between the sub-prompt's image and the full prompt's image, same seed")),
        ("Words", report.word_text_html(words, VALUES, labels, base_value=BASE)),
        ("Values per method", report.values_table_html(labels, methods, {"shap-exact": BASE, "lime": 0.44})),
        ("Bar chart", f'<img src="{report.figure_data_uri(report.bar_chart(labels, methods, BASE))}" alt="bars">'),
        ("Waterfall", f'<img src="{report.figure_data_uri(report.waterfall(explanation))}" alt="waterfall">'),
        ("Sub-prompt images", report.subprompt_grid_html(entries)),
        ("Attention maps", report.attention_maps_html(image, maps, labels)),
        ("Image segments", report.segment_table_html(image, segments, rng.normal(0, 0.1, (4, 7)), labels)),
        ("Seed agreement", report.seed_agreement_html(seed_agreement(seeds, labels))),
    ]
    return report.write_page(path, report.page(f"Report: {PROMPT}", sections, index=True))


def css_rgba(value: str) -> tuple[float, float, float, float]:
    match = re.fullmatch(r"rgba?\(([^)]*)\)", value.strip())
    assert match, value
    parts = [float(p) for p in match.group(1).split(",")]
    return tuple(parts + [1.0] * (4 - len(parts)))


@needs_browser
def test_report_page_renders_in_chromium(browser, tmp_path):
    from PIL import Image

    path = build_report(tmp_path / "report.html")
    logs = open_in_browser(browser, path)
    severe = [entry for entry in logs if entry.get("level") == "SEVERE"]
    assert severe == [], severe

    # every image is an inline PNG that decoded
    images = browser.execute_script(
        "return [...document.images].map(i => [i.src.slice(0, 22), i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) == 2 + 4 + 1 + 1  # bar chart + waterfall, thumbnails, attention maps, segments
    for src, complete, width, height in images:
        assert src == "data:image/png;base64," and complete and width > 0 and height > 0

    # the words: separated by spaces, coloured, with their label and value as tooltip
    text = browser.execute_script("return document.querySelector('.word-text .shap-words').innerText")
    assert " ".join(text.split()) == PROMPT and text.strip() == PROMPT
    words = browser.execute_script(
        "return [...document.querySelectorAll('.word-text .shap-word')].map(e => "
        "[e.innerText, getComputedStyle(e).backgroundColor, e.title, e.getBoundingClientRect().width])")
    assert [w[0].strip() for w in words] == PROMPT.split()
    for (word, colour, title, width), value in zip(words, VALUES):
        r, g, b, a = css_rgba(colour)
        assert a > 0 and (r, g, b) != (0, 0, 0), (word, colour)
        assert width > 0
        assert title.endswith(f"{value:+.4f}")
    red = words[1]
    r, g, b, a = css_rgba(red[1])
    assert r > b and a > 0.5 and red[2] == "red: +0.3100"
    negative = words[3]
    r, g, b, a = css_rgba(negative[1])
    assert b > r and negative[2] == "and: -0.0900"
    assert [w[2].split(":")[0] for w in words][::4] == ["a#0", "a#1"]

    # word boxes on one line do not overlap each other
    boxes = browser.execute_script(
        "return [...document.querySelectorAll('.word-text .shap-word')].map(e => {"
        "const r = e.getBoundingClientRect(); return [r.left, r.right, r.top]; })")
    for (l1, r1, t1), (l2, r2, t2) in zip(boxes, boxes[1:]):
        if abs(t1 - t2) < 1:
            assert r1 <= l2, (boxes,)

    # the index links point at sections that exist
    missing = browser.execute_script(
        "return [...document.querySelectorAll('nav a')].map(a => a.getAttribute('href').slice(1))"
        ".filter(id => !document.getElementById(id))")
    assert missing == []

    # a screenshot that is not blank
    png = full_page_screenshot(browser)
    (tmp_path / "report_shot.png").write_bytes(png)
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    assert shot.shape[0] > WINDOW[1] and shot.std() > 20
    # a strongly red pixel (the 'red' word / bars) and a blue one are on screen
    assert ((shot[..., 0] > 200) & (shot[..., 2] < 120)).any()
    assert ((shot[..., 2] > 200) & (shot[..., 0] < 80)).any()


# ------------------------------------------------------------------------------ certainty on a saved run's page

@needs_browser
def test_error_bars_and_certainty_sentences_in_chromium(browser, tmp_path):
    """A saved run's report (2 seeds, then 1): every method with finite standard errors draws an error bar per
    word whose ends are the 95% interval of the values table; the certainty sentences are on the page; the bars'
    text is at least 12 px; a 7-word prompt's 128 sub-prompt images are folded, the page stays short."""
    from report_runs import synthetic_run

    from captum_diffusion.runs import load_run
    from captum_diffusion.runs.render import write_report

    run = load_run(synthetic_run(tmp_path / "two", 1, seeds=(0, 1), subprompt_images=1))
    result = run[0]
    assert len(result.words) == 7
    logs = open_in_browser(browser, write_report(run))
    assert [e for e in logs if e["level"] == "SEVERE"] == []
    bars = browser.execute_script(
        "return [...document.querySelectorAll('.bars .err')].map(e => [e.getBoundingClientRect().width, "
        "Number(e.dataset.low), Number(e.dataset.high)])")
    assert len(bars) == 2 * 7  # shap-exact and lime, every word
    # grouped by word, then by method
    expected = np.stack([result.intervals("shap-exact"), result.intervals("lime")], axis=1).reshape(-1, 2)
    np.testing.assert_allclose([b[1:] for b in bars], expected, rtol=1e-5, atol=1e-6)
    assert min(b[0] for b in bars) > 0
    sentences = browser.execute_script("return [...document.querySelectorAll('ul.certainty li')].map(e => e.innerText)")
    assert sentences == [f"{m}: {result.certainty(m)}" for m in ("shap-exact", "lime")]
    assert all("at 95%" in s for s in sentences)
    smallest = browser.execute_script("return Math.min(...[...document.querySelectorAll("
                                      "'.bars .bar-method, .bars .bar-value, .bars .bar-word')].map(e => "
                                      "parseFloat(getComputedStyle(e).fontSize)))")
    assert smallest >= 12
    folded = browser.execute_script("return [...document.querySelectorAll('details .thumb')].filter(e => "
                                    "e.checkVisibility()).length")
    assert folded == 0 and browser.execute_script("return document.querySelectorAll('details .thumb').length") == 128
    height = browser.execute_script("return document.documentElement.scrollHeight")
    print(f"\n[report] one 7-word prompt, 2 seeds: page {height} px tall (128 sub-prompt images folded)")
    assert height < 6000

    one = load_run(synthetic_run(tmp_path / "one", 1, seeds=(0,), subprompt_images=0))
    open_in_browser(browser, write_report(one))
    sentences = browser.execute_script("return [...document.querySelectorAll('ul.certainty li')].map(e => e.innerText)")
    assert sentences[0].startswith("shap-exact: exact for seed 0") and "not known" in sentences[1]
    assert browser.execute_script("return document.querySelectorAll('.bars .err').length") == 0
