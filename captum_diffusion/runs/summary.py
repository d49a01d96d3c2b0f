"""Across a prompt set: which words and word classes the model listens to, which it neglects, and which prompts are
unstable across seeds (``diffusion-explain summary RUN``, :func:`summarize`).

A word's value in a prompt is its seed-averaged value (the mean of its occurrences when it occurs more than once);
across the prompts that contain it these values give its mean, spread (standard deviation, ``ddof=1``) and count.
Words are matched in lower case with surrounding punctuation stripped (``"Circle,"`` is ``circle``). A class's value
in a prompt is the mean of its words' values there.

The test (:data:`TEST`): a word (or class) is

- **neglected** when the ``level`` (95%) Student t confidence interval of its mean across prompts lies inside
  ``±margin`` (an equivalence test: its value is indistinguishable from zero, and not merely unmeasured);
- **used** when that interval excludes zero (the one-sample two-sided t-test rejects a zero mean at ``1 - level``)
  and does not lie inside ``±margin``;
- **unclear** otherwise, e.g. one prompt only, or a wide interval that holds zero.

``margin`` defaults to ``tolerance`` (0.2) times the run's typical word value, the mean of ``|value|`` over every
(prompt, word). No multiple-comparison correction is applied: with ``m`` words tested at 95%, about 5% of words
whose true mean is zero can read *used* by chance; pass ``level = 1 - 0.05 / m`` for Bonferroni's bound.
"""
from __future__ import annotations

import math
import string
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captum_diffusion import checks
from captum_diffusion.runs.table import explained_prompts

__all__ = ["Summary", "summarize", "read_word_classes", "default_word_classes", "word_key", "value_statistics",
           "explained_prompts", "prompt_word_values", "least_seed_agreement", "summary_method", "TEST"]

#: The test behind the ``status`` column, as one sentence (shown with every summary).
TEST = ("neglected: the {level:.0%} Student t interval of the mean across prompts lies inside ±{margin:.3g}; used: "
        "that interval excludes 0 (one-sample two-sided t-test at {alpha:.0%}); unclear: neither. No "
        "multiple-comparison correction ({m} words tested: about {alpha:.0%} of truly zero words may read 'used'; "
        "level=1-0.05/m gives Bonferroni's bound).")


def word_key(word: str) -> str:
    """The key a word is matched by across prompts and classes.

    Parameters
    ----------
    word : str
        A word of a prompt or of a class.

    Returns
    -------
    str
        ``word`` in lower case with surrounding punctuation stripped (kept when nothing else is left).
    """
    key = str(word).lower().strip(string.punctuation)
    return key or str(word).lower()


def _class_mapping(data, name: str) -> dict[str, tuple[str, ...]]:
    """``{class: words}`` checked: a mapping of str to non-empty lists of str; words keyed by :func:`word_key`."""
    if not isinstance(data, dict):
        raise TypeError(f"{name} must map class names to lists of words, got {type(data).__name__}")
    classes = {}
    for label, words in data.items():
        words = checks.string_list(words, f"{name}[{label!r}]", allow_single=False)
        if not words:
            raise ValueError(f"{name}[{label!r}] holds no word")
        classes[str(label)] = tuple(dict.fromkeys(word_key(w) for w in words))
    return classes


def read_word_classes(path) -> dict[str, tuple[str, ...]]:
    """Word classes from a TOML file (``--word-classes``): one key per class, its words as a list.

    Parameters
    ----------
    path : str or os.PathLike
        E.g. ``colour = ["red", "blue"]`` / ``shape = ["circle", "square"]``.

    Returns
    -------
    dict of str to tuple of str
        Class name -> its words (:func:`word_key` form).

    Raises
    ------
    ValueError
        When the file cannot be read or parsed, or a class is not a non-empty list of strings (naming it).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"--word-classes {str(path)!r} cannot be read: {error}") from None
    try:
        return _class_mapping(data, f"--word-classes {str(path)!r}")
    except TypeError as error:
        raise ValueError(str(error)) from None


def default_word_classes(run) -> dict[str, tuple[str, ...]]:
    """The word classes a run's model ships.

    Parameters
    ----------
    run : Run
        The run; its manifest names the model.

    Returns
    -------
    dict of str to tuple of str
        ShapesWorld's (:data:`captum_diffusion.shapes_world.word_classes.WORD_CLASSES`) for the embedded models,
        else empty.
    """
    spec = str(run.manifest.get("model", {}).get("spec") or run.manifest.get("config", {}).get("model", ""))
    if spec.startswith("shapes-world"):
        from captum_diffusion.shapes_world.word_classes import WORD_CLASSES

        return dict(WORD_CLASSES)
    return {}


def value_statistics(values, margin: float, level: float = 0.95) -> dict:
    """Mean, spread and the neglect test (module docstring) of one word's values across prompts.

    Parameters
    ----------
    values : array_like
        float ``(n_prompts,)``: the word's value in each prompt that contains it, payoff units.
    margin : float
        Half-width of the band counted as zero, payoff units (``>= 0``).
    level : float, optional
        Confidence level of the interval, in (0, 1).

    Returns
    -------
    dict
        ``n_prompts``; ``mean``, ``std`` (``ddof=1``), ``standard_error``, ``low`` / ``high`` (the interval) in
        payoff units; ``p_value`` of the two-sided one-sample t-test of a zero mean; ``status``: ``"neglected"``,
        ``"used"`` or ``"unclear"``. Undefined figures (one prompt) are ``None``.
    """
    from scipy import stats

    from captum_diffusion.words.certainty import quantile

    x = np.asarray(values, dtype=np.float64)
    n, mean = int(x.size), float(x.mean())
    if n < 2:
        return dict(n_prompts=n, mean=mean, std=None, standard_error=None, low=None, high=None, p_value=None,
                    status="unclear")
    std = float(x.std(ddof=1))
    error = std / math.sqrt(n)
    half = float(quantile(level, n - 1)) * error
    if error > 0:
        p_value = float(2 * stats.t.sf(abs(mean) / error, n - 1))
    else:  # every prompt gave the same value: zero or not, exactly
        p_value = 1.0 if mean == 0 else 0.0
    low, high = mean - half, mean + half
    status = ("neglected" if -margin <= low and high <= margin else
              "used" if low > 0 or high < 0 else "unclear")
    return dict(n_prompts=n, mean=mean, std=std, standard_error=error, low=low, high=high, p_value=p_value,
                status=status)


@dataclass
class Summary:
    """What :func:`summarize` found across a run's prompts.

    Parameters
    ----------
    method : str
        The word-attribution method summarised.
    n_prompts : int
        Explained prompts read.
    level, margin : float
        The test's confidence level and zero band (payoff units); :attr:`test` states the test in words.
    words, classes : list of dict
        One row per word (``word``) or class (``word_class``, and ``words``: its words seen), sorted by mean,
        largest first, with :func:`value_statistics`' keys (``n_prompts`` counts the prompts).
    unstable : list of dict
        The prompts with the least seed agreement, least first: ``prompt_index``, ``prompt``, ``n_seeds``,
        ``percent_ranks_aligned`` (0..100, mean over seed pairs), ``same_top``. Empty when every prompt has one seed.
    """

    method: str
    n_prompts: int
    level: float
    margin: float
    words: list[dict]
    classes: list[dict]
    unstable: list[dict]

    @property
    def test(self) -> str:
        """The neglect test used, as a sentence (:data:`TEST`)."""
        return TEST.format(level=self.level, margin=self.margin, alpha=1 - self.level, m=len(self.words))

    @property
    def neglected(self) -> list[dict]:
        """The rows of :attr:`words` then :attr:`classes` whose status is ``"neglected"``."""
        return [row for row in self.words + self.classes if row["status"] == "neglected"]

    def to_dict(self) -> dict:
        """The summary as JSON-able data.

        Returns
        -------
        dict
            Every field, plus ``test``.
        """
        return dict(method=self.method, n_prompts=self.n_prompts, level=self.level, margin=self.margin,
                    test=self.test, words=self.words, classes=self.classes, unstable=self.unstable)

    def to_text(self) -> str:
        """The summary as plain text, for a terminal.

        Returns
        -------
        str
            Aligned tables of words, classes and the neglected ones, the least stable prompts, and the test.
        """
        parts = [f"{self.n_prompts} prompt(s), method {self.method}",
                 "words (value across the prompts that contain them, payoff units):",
                 _text_table(self.words, "word", self.level), "word classes:",
                 _text_table(self.classes, "word_class", self.level), "neglected:",
                 _text_table(self.neglected, "name", self.level) if self.neglected else "  none",
                 "least seed agreement:", _unstable_text(self.unstable), "test: " + self.test]
        return "\n".join(parts)

    def to_html(self) -> str:
        """The summary as an HTML fragment, for a report section.

        Returns
        -------
        str
            Tables of words, classes and neglected ones, the least stable prompts, then the test.
        """
        from html import escape

        tables = [("Words", _html_table(self.words, "word", self.level)),
                  ("Word classes", _html_table(self.classes, "word_class", self.level)),
                  ("Neglected", _html_table(self.neglected, "name", self.level))]
        unstable = "".join(f"<li>#{row['prompt_index']} {escape(row['prompt'])}: {row['percent_ranks_aligned']:.0f}% "
                           f"ranks aligned over {row['n_seeds']} seeds</li>" for row in self.unstable)
        parts = [f"<p>{self.n_prompts} prompt(s), method {escape(self.method)}; values in payoff units across the "
                 "prompts that contain each word.</p>"]
        parts += [f"<h3>{title}</h3>{table}" for title, table in tables]
        parts.append("<h3>Least seed agreement</h3>" + (f"<ul>{unstable}</ul>" if unstable else
                                                         "<p>One seed per prompt: not measured.</p>"))
        return "".join(parts) + f"<p><small>Test: {escape(self.test)}</small></p>"


def _rows(rows: list[dict], key: str) -> list[tuple[str, ...]]:
    """Rows of :func:`value_statistics` as text cells: name, prompts, mean, std, interval, p, status."""
    return [(str(row.get("word", row.get("word_class"))) if key == "name" else str(row[key]), str(row["n_prompts"]),
             _cell(row["mean"]), _cell(row["std"], ".3f"),
             "-" if row["low"] is None else f"[{row['low']:+.3f}, {row['high']:+.3f}]",
             _cell(row["p_value"], ".2g"), row["status"]) for row in rows]


def _header(key: str, level: float) -> tuple[str, ...]:
    name = "word or class" if key == "name" else key.replace("_", " ")
    return (name, "prompts", "mean", "std", f"{level:.0%} interval", "p", "status")


def _html_table(rows: list[dict], key: str, level: float) -> str:
    from html import escape

    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in _header(key, level))
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>" for cells in _rows(rows, key))
    return f'<table class="values"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(value, spec: str = "+.3f") -> str:
    return "-" if value is None else format(value, spec)


def _text_table(rows: list[dict], key: str, level: float) -> str:
    """Rows of :func:`value_statistics` as aligned text; ``key`` names the first column."""
    if not rows:
        return "  none"
    lines = [_header(key, level)] + _rows(rows, key)
    widths = [max(len(line[k]) for line in lines) for k in range(len(lines[0]))]
    return "\n".join("  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _unstable_text(rows: list[dict]) -> str:
    if not rows:
        return "  none (one seed per prompt: run two or more seeds to measure it)"
    return "\n".join(f"  #{row['prompt_index']} {row['prompt']!r}: {row['percent_ranks_aligned']:.0f}% ranks "
                     f"aligned over {row['n_seeds']} seeds{'' if row['same_top'] else ', top word differs'}"
                     for row in rows)


def summary_method(run, method: str | None = None) -> str:
    """The method to summarise.

    Parameters
    ----------
    run : Run
        A loaded run.
    method : str, optional
        A method's name, checked; ``None``: the first method every explained prompt has.

    Returns
    -------
    str
        The method.

    Raises
    ------
    ValueError
        When no prompt is explained, or ``method`` is not run on every explained prompt (naming those it is).
    """
    done = [result for result in run.prompts if result.status == "done"]
    if not done:
        raise ValueError(f"run {str(run.directory)!r} has no explained prompt to summarise")
    common = [m for m in done[0].methods if all(m in result.values for result in done)]
    if method is None:
        if not common:
            raise ValueError("no word-attribution method was run on every prompt; pass method=")
        return common[0]
    return checks.one_of(method, common, "method (one run on every prompt)")


def prompt_word_values(run, method: str) -> list[tuple[int, str, dict[str, float]]]:
    """Each explained prompt's seed-averaged word values, keyed by :func:`word_key`.

    Parameters
    ----------
    run : Run
        A loaded run.
    method : str
        A method run on every explained prompt.

    Returns
    -------
    list of tuple
        ``(prompt_index, prompt, {word: value})``, value in payoff units (the mean of a repeated word's
        occurrences).
    """
    rows = []
    for number, result in explained_prompts(run):
        grouped: dict[str, list[float]] = {}
        for word, value in zip(result.words, result.values[method].mean(0)):
            grouped.setdefault(word_key(word), []).append(float(value))
        rows.append((number, result.prompt, {word: float(np.mean(v)) for word, v in grouped.items()}))
    return rows


def _word_rows(per_prompt, margin: float, level: float) -> list[dict]:
    samples: dict[str, list[float]] = {}
    for _, _, values in per_prompt:
        for word, value in values.items():
            samples.setdefault(word, []).append(value)
    rows = [dict(word=word, **value_statistics(values, margin, level)) for word, values in samples.items()]
    return sorted(rows, key=lambda row: -row["mean"])


def _class_rows(per_prompt, classes: dict, margin: float, level: float) -> list[dict]:
    rows = []
    for label, members in classes.items():
        values, seen = [], set()
        for _, _, words in per_prompt:
            present = [w for w in members if w in words]
            if present:
                values.append(float(np.mean([words[w] for w in present])))
                seen.update(present)
        if values:
            rows.append(dict(word_class=label, words=[w for w in members if w in seen],
                             **value_statistics(values, margin, level)))
    return sorted(rows, key=lambda row: -row["mean"])


def least_seed_agreement(run, method: str, k: int = 5) -> list[dict]:
    """The prompts whose word ranking agrees least across seeds.

    Parameters
    ----------
    run : Run
        A loaded run; prompts with one seed are skipped.
    method : str
        The method whose rankings are compared between seeds.
    k : int, optional
        How many prompts.

    Returns
    -------
    list of dict
        At most ``k`` rows, least agreement first: ``prompt_index``, ``prompt``, ``n_seeds``, ``same_top`` and
        ``percent_ranks_aligned`` (0..100: :func:`captum_diffusion.metrics.seed_agreement`'s mean over seed pairs).
        Prompts with one seed are skipped.
    """
    from captum_diffusion.metrics.agreement import seed_agreement

    rows = []
    for number, result in explained_prompts(run):
        if len(result.seeds) < 2:
            continue
        agreement = seed_agreement(result.values[method], result.labels)
        rows.append(dict(prompt_index=number, prompt=result.prompt, n_seeds=len(result.seeds), same_top=agreement["same_top"],
                         percent_ranks_aligned=agreement["percent_ranks_aligned"]["mean"]))
    return sorted(rows, key=lambda row: (row["percent_ranks_aligned"], row["same_top"]))[:k]


def summarize(run, word_classes=None, *, method: str | None = None, level: float = 0.95, tolerance: float = 0.2,
              margin: float | None = None, unstable: int = 5) -> Summary:
    """Summarise a run across its prompts (module docstring: what is computed and the test used).

    Parameters
    ----------
    run : Run or str or os.PathLike
        A loaded run, or its folder.
    word_classes : mapping or str or os.PathLike, optional
        Class name -> words, or a TOML file of them (:func:`read_word_classes`); ``None``: the run's own
        (:func:`default_word_classes`: ShapesWorld's for the embedded models); ``{}``: no classes.
    method : str, optional
        The method to summarise (default: the first one run on every prompt).
    level : float, optional
        Confidence level of the test, in (0, 1).
    tolerance : float, optional
        ``margin`` as a fraction of the run's mean ``|value|`` over every (prompt, word), when ``margin`` is not given.
    margin : float, optional
        The band ``±margin`` (payoff units) within which a mean counts as zero.
    unstable : int, optional
        How many of the least seed-stable prompts to list.

    Returns
    -------
    Summary
    """
    from captum_diffusion.runs.store import load_run

    run = load_run(run, images=False) if isinstance(run, (str, Path)) else run
    method = summary_method(run, method)
    if word_classes is None:
        classes = default_word_classes(run)
    elif isinstance(word_classes, (str, Path)):
        classes = read_word_classes(word_classes)
    else:
        classes = _class_mapping(dict(word_classes), "word_classes")
    level = checks.finite_number(level, "level", low=0.0, high=1.0, low_open=True)
    per_prompt = prompt_word_values(run, method)
    if margin is None:
        tolerance = checks.finite_number(tolerance, "tolerance", low=0.0)
        margin = tolerance * float(np.mean([abs(v) for _, _, words in per_prompt for v in words.values()]))
    margin = checks.finite_number(margin, "margin", low=0.0)
    unstable = checks.int_at_least(unstable, 0, "unstable")
    return Summary(method=method, n_prompts=len(per_prompt), level=level, margin=margin,
                   words=_word_rows(per_prompt, margin, level), classes=_class_rows(per_prompt, classes, margin, level),
                   unstable=least_seed_agreement(run, method, unstable))
