"""captum_diffusion.report: the HTML report's building blocks (no model, no browser; see
test_report_browser.py for the page in a real Chromium)."""
from __future__ import annotations

import base64
import io
import os
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import shap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from PIL import Image  # noqa: E402

from captum_diffusion import report  # noqa: E402
from captum_diffusion.metrics import seed_agreement  # noqa: E402

PROMPT = "a red circle and a blue square"
WORDS = PROMPT.split()
LABELS = ["a#0", "red", "circle", "and", "a#1", "blue", "square"]
VALUES = np.array([0.02, 0.31, 0.12, -0.05, -0.01, 0.18, 0.09])
BASE = 0.41


def decode_uri(uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):])))


def img_uris(html: str) -> list[str]:
    return re.findall(r'<img src="(data:image/png;base64,[^"]+)"', html)


class _Words(HTMLParser):
    """Visible text of ``div.shap-words`` (elements styled ``display: none`` skipped), the words' styles and
    titles: what a browser shows, without a browser."""

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[bool, bool]] = []  # (inside shap-words, hidden)
        self.text: list[str] = []
        self.words: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        inside, hidden = self.stack[-1] if self.stack else (False, False)
        inside = inside or "shap-words" in (attrs.get("class") or "").split()
        style = (attrs.get("style") or "").replace(" ", "")
        hidden = hidden or "display:none" in style
        if "shap-word" in (attrs.get("class") or "").split():
            self.words.append({"style": attrs.get("style", ""), "title": attrs.get("title", ""),
                               "label": attrs.get("data-label"), "text": ""})
        self.stack.append((inside, hidden))

    def handle_endtag(self, tag):
        self.stack.pop()

    def handle_data(self, data):
        inside, hidden = self.stack[-1] if self.stack else (False, False)
        if inside and not hidden:
            self.text.append(data)
            if self.words and self.words[-1]["text"] == "" and data.strip():
                self.words[-1]["text"] = data.strip()


def parse_words(html: str) -> _Words:
    parser = _Words()
    parser.feed(html)
    return parser


def background_rgba(style: str) -> tuple[float, float, float, float]:
    match = re.search(r"background:\s*rgba?\(([^)]*)\)", style)
    assert match, style
    parts = [float(p) for p in match.group(1).split(",")]
    return tuple(parts + [1.0] * (4 - len(parts)))


# ------------------------------------------------------------------------------------------------ images

def test_image_data_uri_round_trips_pil_and_array():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    for image in (array, Image.fromarray(array)):
        decoded = decode_uri(report.image_data_uri(image))
        assert decoded.format == "PNG" and decoded.size == (30, 20)
        np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), array)


def test_figure_data_uri_is_png_and_closes_the_figure():
    fig = plt.figure(figsize=(2, 1))
    fig.gca().plot([0, 1], [1, 0])
    number = fig.number
    image = decode_uri(report.figure_data_uri(fig))
    assert image.size[0] > 50 and image.size[1] > 20
    assert not plt.fignum_exists(number)


# ------------------------------------------------------------------------------------------- word text

@pytest.mark.parametrize("stock", [True, False], ids=["shap-text", "own"])
def test_word_text_html_colours_spaces_and_tooltips(stock):
    html = report.word_text_html(WORDS, VALUES, base_value=BASE, stock=stock)
    assert "np.float" not in html and not re.search(r"np\.\w+\(", html)
    parsed = parse_words(html)
    assert " ".join("".join(parsed.text).split()) == PROMPT  # words separated by spaces
    assert "".join(parsed.text).strip().count(" ") == len(WORDS) - 1
    assert [w["text"] for w in parsed.words] == WORDS
    assert [w["label"] for w in parsed.words] == LABELS
    for word, value, label in zip(parsed.words, VALUES, LABELS):
        r, g, b, a = background_rgba(word["style"])
        assert a > 0, word
        assert (r > b) if value > 0 else (b > r), (label, value, word["style"])
        assert word["title"] == f"{label}: {value:+.4f}"
    # one symmetric scale: the largest |value| is the most opaque
    alphas = [background_rgba(w["style"])[3] for w in parsed.words]
    assert int(np.argmax(alphas)) == int(np.argmax(np.abs(VALUES)))


def test_word_text_html_stock_plot_is_relabelled_for_prompts():
    html = report.word_text_html(WORDS, VALUES, base_value=BASE)
    assert 'f(&quot;&quot;) (empty prompt)' in html and "f(prompt)" in html
    assert "base value" not in html and "(inputs)" not in html
    assert "<svg" in html  # shap's force bar
    without_base = report.word_text_html(WORDS, VALUES)
    assert "<svg" not in without_base and "shap-word" in without_base


def test_word_text_html_close_labels_do_not_overlap():
    """f("") and f(prompt) almost equal: one label is anchored left of its point, the other right."""
    html = report.word_text_html(["a", "red", "circle"], [0.3, -0.29, 0.01], base_value=0.5)
    anchors = re.findall(r'<text x="[^"]+" y="10"[^>]*text-anchor="(\w+)"', html)
    assert sorted(anchors) == ["end", "start"]


def test_word_text_html_falls_back_when_shap_html_changes(monkeypatch):
    monkeypatch.setattr(shap.plots, "text", lambda *args, **kwargs: "<div>something else</div>")
    html = report.word_text_html(WORDS, VALUES, base_value=BASE)
    parsed = parse_words(html)
    assert " ".join("".join(parsed.text).split()) == PROMPT
    assert len(parsed.words) == len(WORDS) and "something else" not in html


def test_word_text_html_escapes_and_checks():
    html = report.word_text_html(["x<y", "z"], [0.1, -0.1], stock=True)
    assert "x&lt;y" in html and "x<y" not in html
    with pytest.raises(ValueError, match="2 words"):
        report.word_text_html(["a", "b"], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        report.word_text_html(["a", "b"], [0.1, np.nan])


# ----------------------------------------------------------------------------------------- plots, tables

def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


@pytest.mark.parametrize("feature_names", [None, LABELS], ids=["labels-from-data", "feature-names"])
def test_waterfall_relabels_base_and_prompt(feature_names):
    explanation = shap.Explanation(values=VALUES, base_values=BASE, data=np.array(WORDS, dtype=object),
                                   feature_names=feature_names)
    fig = report.waterfall(explanation)
    texts = _texts(fig)
    joined = "\n".join(texts)
    assert 'f("") (empty prompt) = 0.410' in joined
    assert f"f(prompt) = {BASE + VALUES.sum():.3f}" in joined
    assert "E[f(X)]" not in joined and "f(x)" not in joined
    assert "a#0" in texts and "a#1" in texts
    assert not any(re.search(r"\ba = a\b", t) for t in texts)
    report.figure_data_uri(fig)  # renders and closes


def test_bar_chart_groups_methods_per_word():
    methods = {"shap-exact": VALUES, "lime": VALUES * 0.8, "captum-shapley_sampling": VALUES + 0.01}
    fig = report.bar_chart(LABELS, methods, base_value=BASE)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == LABELS
    assert len(ax.containers) == 3 and all(len(c) == len(LABELS) for c in ax.containers)
    np.testing.assert_allclose([bar.get_width() for bar in ax.containers[1]], VALUES * 0.8)
    assert "0.410" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(methods)
    with pytest.raises(ValueError, match="7 words"):
        report.bar_chart(LABELS, {"lime": [1.0, 2.0]})


def test_bar_chart_draws_error_bars_where_known_in_readable_text():
    halves = {"shap-exact": np.full(7, 0.03), "lime": np.full(7, np.nan)}
    fig = report.bar_chart(LABELS, {"shap-exact": VALUES, "lime": VALUES / 2}, errors_by_method=halves)
    ax = fig.axes[0]
    from matplotlib.container import BarContainer

    exact, lime = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert exact.errorbar is not None and lime.errorbar is None  # lime's errors are not known: no error bar
    segments = exact.errorbar.lines[2][0].get_segments()
    np.testing.assert_allclose([seg[1][0] - seg[0][0] for seg in segments], 0.06)
    assert min(t.get_fontsize() for t in ax.get_yticklabels()) >= 12  # 12 pt at 100 dpi: about 17 px
    plt.close(fig)


def test_values_table_html_shows_every_method_and_efficiency_rows():
    html = report.values_table_html(LABELS, {"shap-exact": VALUES, "lime": VALUES * 0.5},
                                    {"shap-exact": BASE, "lime": 0.45})
    for name in ("shap-exact", "lime", *LABELS):
        assert f">{name}<" in html
    for value in (*VALUES, *(VALUES * 0.5)):
        assert f">{value:.3f}<" in html
    assert f">{BASE + VALUES.sum():.3f}<" in html and ">0.410<" in html
    assert "np." not in html


def test_subprompt_grid_html_captions_in_order_and_downscales():
    big = np.zeros((512, 512, 3), dtype=np.uint8)
    entries = [("", 0.4123, big), ("a red", 0.55, big[:64, :64]), ("a red circle", 1.0, big[:64, :64])]
    html = report.subprompt_grid_html(entries, thumb_size=96)
    assert "(empty prompt)" in html and ">0.412<" in html and ">0.550<" in html and ">1.000<" in html
    assert html.index("(empty prompt)") < html.index("a red<") < html.index("a red circle<")
    uris = img_uris(html)
    assert len(uris) == 3
    assert max(decode_uri(uris[0]).size) == 96 and decode_uri(uris[1]).size == (64, 64)


def test_attention_maps_share_one_colour_scale_and_one_colour_bar():
    rng = np.random.default_rng(0)
    image = np.full((64, 64, 3), 255, dtype=np.uint8)
    maps = rng.random((3, 16, 16)) * np.array([1.0, 2.0, 5.0])[:, None, None]
    fig, (vmin, vmax) = report.attention_maps_figure(image, maps, ["a", "red", "circle"])
    assert vmin == 0.0 and vmax == pytest.approx(maps.max())
    overlays = [im for ax in fig.axes for im in ax.get_images() if im.get_array().shape[:2] == (16, 16)]
    assert len(overlays) == 3 and {im.get_clim() for im in overlays} == {(vmin, vmax)}
    colourbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colourbars) == 1
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["a", "red", "circle"]
    plt.close(fig)
    html = report.attention_maps_html(image, maps, ["a", "red", "circle"])
    assert len(img_uris(html)) == 1 and "One colour scale" in html
    with pytest.raises(ValueError, match="n_words=2"):
        report.attention_maps_html(image, maps, ["a", "red"])


def test_segment_table_html_numbers_and_values():
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    segments = np.zeros((32, 32), dtype=np.int64)
    segments[:, 16:] = 1
    segments[16:, :] += 2
    table = np.arange(8, dtype=float).reshape(4, 2) / 10 - 0.3
    html = report.segment_table_html(image, segments, table, ["red", "circle"])
    assert len(img_uris(html)) == 1
    for i in range(4):
        assert f"<tr><th>{i}</th>" in html
    for value in table.ravel():
        assert f">{value:.3f}<" in html
    assert html.count('class="num best"') == 2  # segment 3 is the largest for both words
    with pytest.raises(ValueError, match="rows"):
        report.segment_table_html(image, segments, table[:3], ["red", "circle"])


# ------------------------------------------------------------------------------------------ seed agreement

def test_seed_agreement_identical_seeds_agree_fully():
    values = np.array([[0.1, 0.6, 0.3], [0.1, 0.6, 0.3]])
    result = seed_agreement(values, ["a", "red", "circle"])
    assert result["percent_ranks_aligned"] == {"mean": 100.0, "min": 100.0}
    assert result["spearman"]["mean"] == pytest.approx(1.0) and result["kendall"]["min"] == pytest.approx(1.0)
    assert result["std"] == [0.0, 0.0, 0.0] and result["same_top"]
    assert [s["top"] for s in result["per_seed"]] == ["red", "red"]
    assert result["per_seed"][0]["ranking"] == ["red", "circle", "a"]


def test_seed_agreement_reversed_ranking():
    values = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    result = seed_agreement(values, ["x", "y", "z"])
    assert result["pairs"][0]["percent_ranks_aligned"] == pytest.approx(100 / 3)  # only the middle word
    assert result["spearman"]["mean"] == pytest.approx(-1.0)
    assert result["kendall"]["mean"] == pytest.approx(-1.0)
    assert not result["same_top"]
    assert [s["top"] for s in result["per_seed"]] == ["x", "z"]


def test_seed_agreement_red_circle_example_and_summary_over_pairs():
    """'red' scored 0.67 on seed 0 and 0.06 on seed 1 for 'a red circle'."""
    values = np.array([[0.05, 0.67, 0.20], [0.10, 0.06, 0.50], [0.05, 0.60, 0.25]])
    result = seed_agreement(values, ["a", "red", "circle"])
    assert result["n_seeds"] == 3 and len(result["pairs"]) == 3
    assert result["std"][1] == pytest.approx(np.std([0.67, 0.06, 0.60]))
    assert result["mean"][1] == pytest.approx(np.mean([0.67, 0.06, 0.60]))
    aligned = [p["percent_ranks_aligned"] for p in result["pairs"]]
    assert aligned == pytest.approx([0.0, 100.0, 0.0])
    assert result["percent_ranks_aligned"]["mean"] == pytest.approx(100 / 3)
    assert result["percent_ranks_aligned"]["min"] == 0.0
    assert result["spearman"]["min"] == pytest.approx(-0.5)
    html = report.seed_agreement_html(result, seeds=[0, 1, 7])
    assert "seed 7" in html and ">0.670<" in html and ">0.060<" in html and "33%" in html
    assert "differs" in html and f">{np.std([0.67, 0.06, 0.60]):.3f}<" in html


def test_seed_agreement_undefined_correlations_and_one_seed():
    result = seed_agreement([[0.2, 0.2, 0.2], [0.1, 0.5, 0.3]], ["a", "b", "c"])
    assert result["pairs"][0]["spearman"] is None and result["spearman"] == {"mean": None, "min": None}
    one = seed_agreement([[0.1, 0.5]], ["a", "b"])
    assert one["pairs"] == [] and one["percent_ranks_aligned"]["mean"] is None
    assert "One seed only" in report.seed_agreement_html(one)
    with pytest.raises(ValueError, match="n_words=2"):
        seed_agreement([[0.1, 0.2, 0.3]], ["a", "b"])


# ------------------------------------------------------------------------------------------------- page

def test_interaction_pairs_html_keeps_order_sign_and_one_scale():
    pairs = [("red", "circle", 0.3), ("blue", "a#1", -0.15), ("a#0", "and", 0.0)]
    html = report.interaction_pairs_html(pairs)
    rows = re.findall(r'<tr><th>([^<]+)</th><th>([^<]+)</th><td class="num" style="background: ([^"]+)">([^<]+)</td>',
                      html)
    assert [(a, b, float(v)) for a, b, _, v in rows] == pairs
    strong, weak, zero = (background_rgba(f"background: {style}") for _, _, style, _ in rows)
    assert strong[0] > strong[2] and weak[2] > weak[0]          # red for acting together, blue for redundant
    assert strong[3] > weak[3] > zero[3]                          # one scale: |0.3| strongest, 0 transparent
    assert "<th>k-SII</th>" in html and "<th>STII</th>" in report.interaction_pairs_html(pairs, "STII")
    with pytest.raises(ValueError, match="pairs is empty"):
        report.interaction_pairs_html([])


def test_deletion_curve_figure_shows_the_method_beside_random_orders():
    curve = np.array([1.0, 0.5, 0.3, 0.2])
    random_curves = np.array([[1.0, 0.9, 0.6, 0.2], [1.0, 0.7, 0.5, 0.2]])
    fig = report.deletion_curve_figure(curve, random_curves, "shap-exact")
    assert isinstance(fig, Figure)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    aopc = (1.0 - curve).mean()                                    # 0.5
    random_aopc = np.mean([(1.0 - c).mean() for c in random_curves])  # (0.325 + 0.4) / 2
    assert legend == ["random orderings, 5-95%", "random mean (AOPC %.3f)" % random_aopc,
                      "shap-exact order (AOPC %.3f)" % aopc]
    np.testing.assert_array_equal(fig.axes[0].lines[1].get_ydata(), curve)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        report.deletion_curve_figure(curve, random_curves[:, :3], "shap-exact")


def test_how_to_read_html_explains_each_section():
    html = report.how_to_read_html("CLIP cosine between the sub-prompt's image and the full prompt's image")
    assert "CLIP cosine between the sub-prompt&#x27;s image" in html
    for phrase in ("empty prompt", "base value", "Negative", "lowers the score", "one colour scale",
                   "Ranks aligned", "Spearman", "Kendall"):
        assert phrase.lower() in html.lower(), phrase


def test_page_is_self_contained_with_index_and_unique_anchors():
    sections = [("Prompt: a <red> circle", "<p>one</p>"), ("Word values", "<p>two</p>"),
                ("Word values", "<p>three</p>"), ("Other", "<p>four</p>", "prompt-2")]
    html = report.page("Run <1>", sections, index=[("a <red> circle", "prompt-a-red-circle"),
                                                   ("second", "prompt-2")])
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    assert "<title>Run &lt;1&gt;</title>" in html
    ids = re.findall(r'<section id="([^"]+)"', html)
    assert ids == ["prompt-a-red-circle", "word-values", "word-values-2", "prompt-2"]
    assert re.findall(r'<a href="#([^"]+)"', html) == ["prompt-a-red-circle", "prompt-2"]
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html
    assert "@import" not in html and "url(" not in html
    auto = report.page("t", sections[:2], index=True)
    assert re.findall(r'<a href="#([^"]+)"', auto) == ["prompt-a-red-circle", "word-values"]
    assert "<nav" not in report.page("t", sections[:1])


def test_write_page_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "run" / "report.html"
    assert report.write_page(path, "<p>old é</p>") == path
    assert path.read_text(encoding="utf-8") == "<p>old é</p>"
    report.write_page(path, "<p>new</p>")
    assert path.read_text(encoding="utf-8") == "<p>new</p>"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        report.write_page(path, "<p>half</p>")
    assert path.read_text(encoding="utf-8") == "<p>new</p>"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temp file left


def test_seed_agreement_keeps_its_old_name_in_report_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="metrics.seed_agreement"):
        old = report.seed_agreement
    assert old is seed_agreement
    assert "seed_agreement" not in report.__all__


def test_every_documented_report_name_is_importable():
    from captum_diffusion.report import (BASE_LABEL, EMPTY_PROMPT_LABEL, PROMPT_LABEL, anchor_id,  # noqa: F401
                                         attention_maps_figure, attention_maps_html, bar_chart,
                                         deletion_curve_figure, figure_data_uri, how_to_read_html, image_data_uri,
                                         interaction_pairs_html, page, segment_figure, segment_table_html,
                                         seed_agreement_html, subprompt_grid_html, values_table_html, waterfall,
                                         word_text_html, write_page, certainty_html, collapsed_html,
                                         value_bars_html, waterfall_html, top_words_html, index_table_html)

    assert callable(page) and callable(write_page) and BASE_LABEL == 'f("") (empty prompt)'
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        report.nothing  # noqa: B018


def test_one_atomic_write_serves_the_cache_the_store_and_the_report(tmp_path):
    """files.atomic_write: bytes or a writer function; 0644 less the umask; the cache and the store use it."""
    from captum_diffusion import files
    from captum_diffusion.generation import cache
    from captum_diffusion.runs import store

    assert cache.atomic_write is files.atomic_write and store.atomic_write is files.atomic_write
    previous = os.umask(0o022)
    try:
        page = report.write_page(tmp_path / "deep" / "report.html", "<p>é</p>")
        data = files.atomic_write(tmp_path / "data.bin", lambda file: file.write(b"\x00\x01"))
    finally:
        os.umask(previous)
    assert page.read_bytes() == "<p>é</p>".encode() and data.read_bytes() == b"\x00\x01"
    assert page.stat().st_mode & 0o777 == 0o644
    with pytest.raises(TypeError, match="content must be bytes"):
        files.atomic_write(tmp_path / "x", "text")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data.bin", "deep", "report.html"]
    name = files.temporary_name(tmp_path / "a.png").name
    assert files.temporary_owner(name) == (files.HOST, os.getpid()) and files.temporary_owner(".a.x1.tmp") is None
    with pytest.warns(DeprecationWarning, match="files.atomic_write"):
        store.atomic_write_bytes(tmp_path / "old.bin", b"old")
    assert (tmp_path / "old.bin").read_bytes() == b"old"


# ------------------------------------------------------------------------------------- certainty in the saved run

def _prompt_run(values: np.ndarray, methods=("shap-exact", "lime"), seeds=None):
    from captum_diffusion.runs.store import PromptRun

    seeds = list(range(values.shape[0])) if seeds is None else seeds
    result = PromptRun(PROMPT, WORDS, LABELS, seeds)
    for k, method in enumerate(methods):
        result.values[method] = values + 0.01 * k
        result.base_values[method] = np.full(len(seeds), BASE)
    return result


def test_standard_errors_between_seeds_are_saved_and_reloaded(tmp_path):
    """Two or more seeds: std(ddof=1) / sqrt(n) per word, Student t intervals with n - 1 degrees of freedom; the
    numbers in result.json reload equal, and a method's own standard errors override the derived ones."""
    from scipy import stats

    from captum_diffusion.runs.store import load_prompt, prompt_dir, save_prompt

    rng = np.random.default_rng(0)
    per_seed = VALUES + rng.normal(0, 0.02, (4, VALUES.size))
    result = _prompt_run(per_seed)
    own = np.linspace(0.001, 0.007, VALUES.size)
    save_prompt(tmp_path, 0, result, standard_errors={"lime": own})
    back = load_prompt(prompt_dir(tmp_path, 0), images=False)
    expected = per_seed.std(axis=0, ddof=1) / 2.0
    np.testing.assert_array_equal(back.standard_errors["shap-exact"], expected)
    np.testing.assert_array_equal(back.degrees_of_freedom["shap-exact"], np.full(VALUES.size, 3.0))
    np.testing.assert_array_equal(back.standard_errors["lime"], own)
    assert back.error_sources == {"shap-exact": "seeds", "lime": "estimator"}
    q = stats.t.ppf(0.975, 3)
    np.testing.assert_allclose(back.intervals("shap-exact"),
                               np.stack([per_seed.mean(0) - q * expected, per_seed.mean(0) + q * expected], 1))
    assert back.intervals("lime").shape == (VALUES.size, 2)


def test_an_estimate_object_stores_its_errors_degrees_of_freedom_and_covariance(tmp_path):
    """What the multi-fidelity estimator returns (ShapleyEstimate: .standard_errors, .degrees_of_freedom,
    .covariance) is stored whole, reloads equal, and its covariance decides the separation of two words."""
    from types import SimpleNamespace

    from captum_diffusion.runs.store import load_prompt, prompt_dir, save_prompt
    from captum_diffusion.words.certainty import certainty_statement

    result = _prompt_run(VALUES[None, :], methods=("shap-multifidelity",))
    errors = np.full(7, 0.08)
    covariance = np.full((7, 7), 0.0064 * 0.99) + np.eye(7) * 0.0064 * 0.01  # errors shared across words
    estimate = SimpleNamespace(standard_errors=errors, degrees_of_freedom=np.full(7, 12.0), covariance=covariance)
    save_prompt(tmp_path, 0, result, standard_errors={"shap-multifidelity": estimate})
    back = load_prompt(prompt_dir(tmp_path, 0), images=False)
    np.testing.assert_array_equal(back.covariances["shap-multifidelity"], covariance)
    np.testing.assert_array_equal(back.degrees_of_freedom["shap-multifidelity"], np.full(7, 12.0))
    assert back.error_sources["shap-multifidelity"] == "estimator"
    sentence = back.certainty("shap-multifidelity")
    assert sentence == certainty_statement(VALUES, errors, LABELS, k=3, degrees_of_freedom=np.full(7, 12.0),
                                           covariance=covariance)
    assert "certain at 95%" in sentence and "not certain" not in sentence  # independent errors would not separate
    assert "not certain" in certainty_statement(VALUES, errors, LABELS, k=3, degrees_of_freedom=np.full(7, 12.0))


def test_one_seed_is_exact_for_that_seed_or_of_unknown_error():
    result = _prompt_run(VALUES[None, :], seeds=[5])
    np.testing.assert_array_equal(result.intervals("shap-exact"), np.stack([VALUES, VALUES], 1))
    assert result.certainty("shap-exact").startswith("exact for seed 5")
    assert np.isnan(result.intervals("lime")).all()
    assert "not known" in result.certainty("lime")
    assert result.error_sources == {"shap-exact": "exact", "lime": "unknown"}


def test_certainty_sentence_separates_or_names_the_pair():
    """Clearly separated top words are "certain at 95%"; two values within each other's error are named."""
    rng = np.random.default_rng(1)
    spread = np.array([0.001] * 7)
    far = np.array([0.0, 0.5, 0.4, -0.1, 0.0, 0.3, 0.1]) + rng.normal(0, 1, (8, 7)) * spread
    assert "top-3 words ('red', 'circle', 'blue') certain at 95%" in _prompt_run(far).certainty("shap-exact")
    close = np.array([0.0, 0.5, 0.4, -0.1, 0.0, 0.12, 0.1]) + rng.normal(0, 0.05, (8, 7))
    sentence = _prompt_run(close).certainty("shap-exact")
    assert "top-3 words not certain at 95%" in sentence and "'blue' and 'square' cannot be told apart" in sentence


def test_older_runs_without_standard_errors_load_with_derived_ones(tmp_path):
    import json

    from captum_diffusion.runs.store import RESULT, load_prompt, prompt_dir, save_prompt

    result = _prompt_run(np.stack([VALUES, VALUES + 0.02]))
    save_prompt(tmp_path, 0, result)
    path = prompt_dir(tmp_path, 0) / RESULT
    data = json.loads(path.read_text())
    for key in ("standard_errors", "degrees_of_freedom", "error_sources"):
        del data[key]
    path.write_text(json.dumps(data))
    back = load_prompt(prompt_dir(tmp_path, 0), images=False)
    np.testing.assert_allclose(back.standard_errors["lime"], np.full(7, 0.01))
    assert back.error_sources["lime"] == "seeds"


def test_set_standard_errors_checks_its_input():
    result = _prompt_run(VALUES[None, :])
    with pytest.raises(ValueError, match="was not run"):
        result.set_standard_errors("captum-lime", np.zeros(7))
    with pytest.raises(ValueError, match=r"must be \(n_words=7,\)"):
        result.set_standard_errors("lime", np.zeros(3))
    with pytest.raises(ValueError, match="source must be one of"):
        result.set_standard_errors("lime", np.zeros(7), source="guess")


# ------------------------------------------------------------------------------------- bars, table, notes, grid

def test_value_bars_draw_an_error_bar_only_where_the_error_is_known():
    from captum_diffusion.report.bars import value_bars_html

    halves = {"shap-exact": np.full(7, 0.02), "lime": np.array([np.nan, 0.0, 0.01, np.nan, 0, 0, 0])}
    html = value_bars_html(LABELS, {"shap-exact": VALUES, "lime": VALUES / 2}, halves)
    assert html.count('class="bar"') == 14 and html.count('class="err"') == 7 + 1
    assert f'data-low="{VALUES[1] - 0.02:.6g}" data-high="{VALUES[1] + 0.02:.6g}"' in html
    assert "+0.310 ± 0.020" in html and "+0.155<" in html  # lime's 'red' is exact: no ±


def test_waterfall_html_runs_from_the_base_to_the_full_payoff():
    from captum_diffusion.report.bars import waterfall_html

    html = waterfall_html(LABELS, VALUES, BASE)
    texts = re.findall(r'<span class="bar-value">([^<]+)</span>', html)
    assert texts[0] == f"{BASE:.3f}" and texts[-1] == f"{BASE + VALUES.sum():.3f}"
    assert texts[1] == "+0.310" and len(texts) == 9  # largest |value| first


def test_values_table_shows_the_intervals():
    intervals = np.stack([VALUES - 0.01, VALUES + 0.01], 1)
    html = report.values_table_html(LABELS, {"shap-exact": VALUES}, None, {"shap-exact": intervals})
    assert html.count('class="ci"') == 7 and "[0.300, 0.320]" in html


def test_how_to_read_explains_only_the_sections_shown():
    html = report.how_to_read_html("payoff", ["payoff", "values", "certainty"])
    assert re.findall(r'data-key="(\w+)"', html) == ["payoff", "values", "certainty"]
    assert "Word pairs" not in html and "Deletion curve" not in html and "segments" not in html
    assert '"red" with' not in report.how_to_read_html("payoff")  # no example that may contradict the page
    assert "from 0 to the largest" not in report.how_to_read_html("payoff")
    with pytest.raises(ValueError, match="unknown keys"):
        report.how_to_read_html("payoff", ["waterfalls"])


def test_segment_table_headers_tell_repeated_words_apart():
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    segments = np.zeros((8, 8), dtype=np.int64)
    segments[4:] = 1
    html = report.segment_table_html(image, segments, np.zeros((2, 7)), WORDS)
    assert re.findall(r"<th>([^<]+)</th>", html.split("<thead>")[1].split("</thead>")[0])[1:] == LABELS


def test_force_bar_values_are_rounded_and_narrow_words_unnamed():
    html = report.word_text_html(["a", "red", "circle"], [0.001, 0.3, -0.1], base_value=0.241275)
    assert "0.241275" not in html and ">0.241<" in html
    assert ">red</text>" in html and ">a</text>" not in html


def test_run_section_command_keeps_its_quotes():
    import shlex
    from pathlib import Path

    from captum_diffusion.runs.render import run_section
    from captum_diffusion.runs.store import Run

    command = ["diffusion-explain", "explain", "a red circle", "--out", "my run"]
    manifest = {"model": {"spec": "m", "class": "C"}, "scorer": {"class": "S", "spec": None}, "config": {},
                "counts": {"images_generated": 1, "images_from_cache": 0}, "timings": {"seconds": 1.0},
                "command": command, "versions": {}, "prompts": []}
    html = run_section(Run(Path("."), manifest, []))
    shown = re.search(r'<code class="command">([^<]+)</code>', html).group(1)
    import html as html_module

    assert shlex.split(html_module.unescape(shown)) == command


def test_stored_png_is_inlined_byte_identical_and_large_one_downscaled(tmp_path):
    from captum_diffusion.report.inline import image_data_uri
    from captum_diffusion.report.sections import subprompt_grid_html

    rng = np.random.default_rng(0)
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(small)
    Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(large)
    uri = image_data_uri(small)
    assert base64.b64decode(uri.split(",", 1)[1]) == small.read_bytes()
    html = subprompt_grid_html([("a", 0.5, small), ("b", 0.25, large)], thumb_size=128)
    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert base64.b64decode(sources[0]) == small.read_bytes()  # 64 px <= 2 x 128: as stored, scaled by width
    assert Image.open(io.BytesIO(base64.b64decode(sources[1]))).size == (128, 128)  # 512 px > 256: downscaled
    assert html.count('width="128"') == 2
