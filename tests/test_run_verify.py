"""Saved runs verify themselves: random damage to a run folder is named by verify / load_run / show / report, and
rerunning the same command repairs it from the cache, bit for bit.

One small ShapesWorld run is written per session (module fixture); every example damages a copy of it.
Classes of damage: delete a file, delete a prompt folder, truncate a file, swap two files, flip bytes, edit a value
of result.json (another number, NaN, inf, a dropped entry), and (repair test) truncate manifest.json.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captum_diffusion.cli import main, show
from captum_diffusion.runs import RunConfig, explain_run, load_run
from captum_diffusion.runs.render import write_report
from captum_diffusion.runs.verify import CHECKSUMS, verify_run

PROMPTS = ("red circle", "blue square")
CONFIG = RunConfig(prompts=PROMPTS, seeds=(0,))
#: Examples of the detection property (no model: about a second each) and of the repair property (one rerun each).
DETECTION_EXAMPLES = 60
REPAIR_EXAMPLES = 8
CASES = {"detected": 0, "repaired": 0}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The run folder, as written, and the sha256 of each of its prompt files."""
    out = tmp_path_factory.mktemp("verify") / "run"
    explain_run(CONFIG, out, command=["test"], progress=False, report=False)
    return out, _digests(out)


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((folder / "prompts").rglob("*")) if p.is_file()}


def _copy(pristine, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(pristine, copy)
    return copy


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in (folder / "prompts").rglob("*") if p.is_file())


def _edit_json(path: Path, data, kind: str) -> None:
    """Change one value of result.json: another number, NaN, inf, or one entry fewer."""
    result = json.loads(path.read_text())
    method = next(iter(result["values"]))
    row = result["values"][method][0]
    if kind == "drop":
        row.pop()
    else:
        row[data.draw(st.integers(0, len(row) - 1), label="word")] = {
            "nan": math.nan, "inf": math.inf, "number": data.draw(st.floats(2.0, 9.0), label="value")}[kind]
    path.write_text(json.dumps(result))


def damage(folder: Path, data) -> list[str]:
    """Apply one random damage to the prompts of ``folder``; return the files (or prompt folder) it hit."""
    files = _files(folder)
    if not files:
        return []
    kind = data.draw(st.sampled_from(["delete", "delete-prompt", "truncate", "swap", "flip", "edit"]), label="kind")
    target = data.draw(st.sampled_from(files), label="file")
    path = folder / target
    if kind == "delete":
        path.unlink()
    elif kind == "delete-prompt":
        target = "/".join(target.split("/")[:2])
        shutil.rmtree(folder / target)
    elif kind == "truncate":
        size = path.stat().st_size
        path.write_bytes(path.read_bytes()[:data.draw(st.integers(0, size - 1), label="keep")])
    elif kind == "swap":
        other = data.draw(st.sampled_from([f for f in files if f != target and
                                           (folder / f).read_bytes() != path.read_bytes()]), label="other")
        a, b = path.read_bytes(), (folder / other).read_bytes()
        path.write_bytes(b)
        (folder / other).write_bytes(a)
        return [target, other]
    elif kind == "flip":
        raw = bytearray(path.read_bytes())
        raw[data.draw(st.integers(0, len(raw) - 1), label="offset")] ^= data.draw(st.integers(1, 255), label="mask")
        path.write_bytes(bytes(raw))
    else:
        target = "/".join(target.split("/")[:2]) + "/result.json"
        edit = data.draw(st.sampled_from(["number", "nan", "inf", "drop"]), label="edit")
        try:
            _edit_json(folder / target, data, edit)
        except (OSError, ValueError):  # an earlier damage left no readable result.json: it stays damaged
            pass
    return [target]


def _prompt_of(target: str) -> int:
    return int(target.split("/")[1])


@settings(max_examples=DETECTION_EXAMPLES, deadline=None,  # capsys is read out in each example
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_is_named_everywhere(pristine, tmp_path_factory, data, capsys):
    folder, _ = pristine
    copy = _copy(folder, tmp_path_factory)
    targets = damage(copy, data)
    numbers = {_prompt_of(target) for target in targets}
    found = verify_run(copy)
    named = {item.file for item in found.damage}
    assert all(target in named for target in targets), found.summary()          # each hit file named
    capsys.readouterr()
    assert main(["verify", str(copy)]) == 1
    printed = capsys.readouterr().out
    assert all(target in printed for target in targets)
    run = load_run(copy)
    for result in run.prompts:
        if result.number in numbers:                   # damaged: named, never done, no values
            assert result.status == "damaged" and not result.values
            assert all(t in result.error for t in targets if _prompt_of(t) == result.number)
            assert run.manifest["prompts"][result.number]["status"] == "damaged"
            assert "damaged" in show(run).splitlines()[1 + result.number]
        else:
            assert result.status == "done"              # the rest loads
    assert "is damaged" in write_report(run).read_text()
    CASES["detected"] += 1


@settings(max_examples=REPAIR_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), manifest=st.booleans())
def test_rerun_repairs_damage_bit_for_bit(pristine, tmp_path_factory, data, manifest):
    folder, digests = pristine
    copy = _copy(folder, tmp_path_factory)
    hits = [damage(copy, data) for _ in range(data.draw(st.integers(1, 3), label="damages"))]
    if manifest:                                   # a truncated manifest.json: rebuilt, prompts/ and cache kept
        text = (copy / "manifest.json").read_text()
        (copy / "manifest.json").write_text(text[:data.draw(st.integers(0, len(text) // 2), label="keep")])
        with pytest.raises(ValueError, match="manifest.json is damaged"):
            load_run(copy)
    repaired = explain_run(CONFIG, copy, command=["test"], progress=False, report=False)
    assert repaired.manifest["counts"]["images_generated"] == 0, hits      # all from the cache
    assert verify_run(copy).ok and _digests(copy) == digests, hits
    assert json.loads((copy / CHECKSUMS).read_text()) == json.loads((folder / CHECKSUMS).read_text())
    for a, b in zip(repaired.prompts, load_run(folder).prompts):
        assert a.status == b.status == "done"
        np.testing.assert_array_equal(a.values["shap-exact"], b.values["shap-exact"])
    CASES["repaired"] += 1


def test_verify_of_a_whole_run_and_of_no_run(pristine, tmp_path, capsys):
    folder, _ = pristine
    assert main(["verify", str(folder)]) == 0 and "no damage" in capsys.readouterr().out
    assert main(["verify", str(tmp_path)]) == 2 and "holds no saved run" in capsys.readouterr().err


def test_damaged_manifest_with_force_is_replaced_keeping_the_cache(pristine, tmp_path_factory):
    """--force on a folder whose manifest is unreadable and whose results are another run's: replaced, cache kept."""
    folder, _ = pristine
    copy = _copy(folder, tmp_path_factory)
    (copy / "manifest.json").write_text('{"prompts": [')
    (copy / CHECKSUMS).write_text(json.dumps({"settings": "another run", "prompts": {}}))
    cached = sorted(p.name for p in (copy / "cache").rglob("*.png"))
    with pytest.raises(ValueError, match="manifest.json is damaged.*--force"):
        explain_run(CONFIG, copy, command=["test"], progress=False, report=False)
    run = explain_run(CONFIG, copy, command=["test"], progress=False, report=False, force=True)
    assert run.manifest["counts"]["images_generated"] == 0 and verify_run(copy).ok
    assert sorted(p.name for p in (copy / "cache").rglob("*.png")) == cached


def test_case_counts():
    """The property suite ran its examples (reported in the closing note)."""
    print(CASES)
