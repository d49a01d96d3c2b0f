"""The on-disk image cache: verified reads, first finished entry wins across processes, killed writes, disk errors
mid-run, cache management (entries / disk_usage / prune) and the ``diffusion-explain cache`` command."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from captum_diffusion import cli
from captum_diffusion.generation import ImageCache, TextToImage
from captum_diffusion.generation import cache as cache_module
from captum_diffusion.generation.cache import parse_duration, parse_size, pixel_hash

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def paint(prompts, seed):
    """A deterministic 8x8 text-to-image callable: noise seeded by the seed and the prompt."""
    return [PIL.Image.fromarray(np.random.default_rng([seed, zlib.crc32(p.encode())]).integers(0, 256, (8, 8, 3),
                                                                                                dtype=np.uint8))
            for p in prompts]


def t2i(cache_dir, function=paint, **kwargs) -> TextToImage:
    return TextToImage(function, cache_dir=cache_dir, cache_key="paint-v1", progress=False, **kwargs)


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def entry_files(directory: Path, key: str) -> tuple[Path, Path]:
    return directory / key[:2] / f"{key}.png", directory / key[:2] / f"{key}.json"


def all_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------- 1. verified entries


def test_metadata_records_key_size_and_pixel_hash(tmp_path):
    generator = t2i(tmp_path)
    image = generator(["a red circle"])[0]
    png, meta = entry_files(tmp_path, generator.key("a red circle"))
    record = json.loads(meta.read_text())
    assert record["key"] == generator.key("a red circle") and record["image_size"] == [8, 8]
    assert record["sha256"] == pixel_hash(image) and record["prompt"] == "a red circle" and record["seed"] == 0
    # the hash is of decoded pixels: another PNG encoding of the same image still verifies
    PIL.Image.open(png).convert("RGB").save(png, format="PNG", compress_level=0)
    again = t2i(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert same(again(["a red circle"])[0], image) and again.n_from_cache == 1


def _copy_other_png(png, meta, other_png, other_meta):
    shutil.copyfile(other_png, png)


def _one_pixel(png, meta, other_png, other_meta):
    PIL.Image.new("RGB", (1, 1), (255, 0, 0)).save(png, format="PNG")


def _truncated(png, meta, other_png, other_meta):
    png.write_bytes(png.read_bytes()[:60])


def _bad_json(png, meta, other_png, other_meta):
    meta.write_text('{"key": "')


def _other_key_json(png, meta, other_png, other_meta):
    shutil.copyfile(other_meta, meta)


def _png_missing(png, meta, other_png, other_meta):
    png.unlink()


def _old_format_json(png, meta, other_png, other_meta):  # written before sizes and hashes were recorded
    record = json.loads(meta.read_text())
    meta.write_text(json.dumps({k: v for k, v in record.items() if k not in ("sha256", "image_size")}))


@pytest.mark.parametrize("damage, says", [
    (_copy_other_png, "pixels do not match the sha256"), (_one_pixel, "is 1x1"), (_truncated, "unreadable"),
    (_bad_json, "not valid JSON"), (_other_key_json, "belongs to another key"), (_png_missing, "missing"),
    (_old_format_json, "says None"),
])
def test_damaged_entry_is_regenerated_with_a_warning_naming_the_file(tmp_path, damage, says):
    truth = t2i(None)(["A", "B"])
    t2i(tmp_path)(["A", "B"])
    key = t2i(tmp_path).key("B")
    png, meta = entry_files(tmp_path, key)
    damage(png, meta, *entry_files(tmp_path, t2i(tmp_path).key("A")))

    generator = t2i(tmp_path)
    with pytest.warns(UserWarning, match=says) as caught:
        images = generator(["A", "B"])
    assert key in str(caught[0].message)  # names the entry's file
    assert (generator.n_generated, generator.n_from_cache) == (1, 1)
    assert same(images[0], truth[0]) and same(images[1], truth[1])  # B's true image, not A's
    with warnings.catch_warnings():  # repaired on disk: a new reader finds a verified entry
        warnings.simplefilter("error")
        fresh = ImageCache(tmp_path)
        assert same(fresh.get(key), truth[1])


def test_read_only_cache_reports_damage_without_removing(tmp_path):
    generator = t2i(tmp_path)
    generator(["A"])
    png, meta = entry_files(tmp_path, generator.key("A"))
    PIL.Image.new("RGB", (1, 1)).save(png, format="PNG")
    with pytest.warns(UserWarning, match="1x1"):
        assert ImageCache(tmp_path, read_only=True).get(generator.key("A")) is None
    assert png.exists() and meta.exists()
    with pytest.raises(FileNotFoundError):
        ImageCache(tmp_path / "missing", read_only=True)


# ------------------------------------------------------------------ 2. the first finished entry wins


def test_a_later_writer_gets_the_first_finished_image(tmp_path):
    first, second = ImageCache(tmp_path), ImageCache(tmp_path)
    red, blue = PIL.Image.new("RGB", (4, 4), "red"), PIL.Image.new("RGB", (4, 4), "blue")
    assert same(first.put("k1", red), red)
    assert same(second.put("k1", blue), red)  # published already: never replaced, the stored image comes back
    assert same(second.get("k1"), red) and same(ImageCache(tmp_path).get("k1"), red)
    assert len(list(tmp_path.rglob("*.png"))) == 1 and not list(tmp_path.rglob("*.tmp"))


def test_text_to_image_returns_the_image_another_process_published_meanwhile(tmp_path):
    other = t2i(tmp_path)

    def slower_twin(prompts, seed):  # while it runs, "another process" publishes the same keys
        other(prompts)
        return [PIL.Image.new("RGB", (8, 8), "white") for _ in prompts]

    generator = t2i(tmp_path, slower_twin)
    assert generator.key("x") == other.key("x")  # one cache_key, one identity: the same keys
    image = generator(["x"])[0]
    assert generator.n_generated == 1 and same(image, paint(["x"], 0)[0])  # the stored image, not its own
    assert same(t2i(tmp_path)(["x"])[0], image)


def test_prompts_published_by_another_process_during_a_call_are_not_generated(tmp_path):
    other = t2i(tmp_path)
    calls = []

    def recording(prompts, seed):
        calls.append(list(prompts))
        if len(calls) == 1:
            other(["p2", "p3"])  # another process finishes two later prompts meanwhile
        return paint(prompts, seed)

    generator = t2i(tmp_path, recording, batch_size=2)
    generator(["p0", "p1", "p2", "p3", "p4"])
    assert calls == [["p0", "p1"], ["p4"]]
    assert (generator.n_generated, generator.n_from_cache) == (3, 2)


def test_png_left_without_metadata_by_a_killed_writer_is_adopted(tmp_path):
    cache = ImageCache(tmp_path)
    red = PIL.Image.new("RGB", (4, 4), "red")
    cache.put("k1", red)
    png, meta = entry_files(tmp_path, "k1")
    meta.unlink()  # killed between publishing the PNG and the JSON
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        later = ImageCache(tmp_path)
        assert later.get("k1") is None  # not committed: missing, silently
        assert same(later.put("k1", PIL.Image.new("RGB", (4, 4), "blue")), red)  # complete, by adopting it
    assert meta.exists() and same(ImageCache(tmp_path).get("k1"), red)


def test_damaged_png_without_metadata_is_not_adopted(tmp_path):
    cache = ImageCache(tmp_path)
    cache.put("k1", PIL.Image.new("RGB", (4, 4), "red"))
    cache.put("k2", PIL.Image.new("RGB", (4, 4), "green"))
    png, meta = entry_files(tmp_path, "k2")
    meta.unlink()
    shutil.copyfile(entry_files(tmp_path, "k1")[0], png)  # k1's image, uncommitted, at k2's place
    blue = PIL.Image.new("RGB", (4, 4), "blue")
    with pytest.warns(UserWarning, match="k2.png without metadata is damaged"):
        assert same(ImageCache(tmp_path).put("k2", blue), blue)
    assert same(ImageCache(tmp_path).get("k2"), blue)


WORKER = r"""
import json, os, sys, time, zlib
import numpy as np, PIL.Image
from captum_diffusion.generation import TextToImage
from captum_diffusion.generation.cache import pixel_hash

cache_dir, sync, worker, n_workers, rounds, out = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6]), sys.argv[6]
rng = np.random.default_rng(worker)
made = {}

def paint(prompts, seed):  # deterministic, plus +1 on ~5% of values that differs per process (batch rounding)
    images = []
    for prompt in prompts:
        base = np.random.default_rng([seed, zlib.crc32(prompt.encode())]).integers(0, 255, (16, 16, 3), np.uint8)
        image = PIL.Image.fromarray(base + (rng.random(base.shape) < 0.05).astype(np.uint8))
        made.setdefault(prompt, []).append(pixel_hash(image))
        images.append(image)
    time.sleep(0.004 * len(prompts))
    return images

generator = TextToImage(paint, cache_dir=cache_dir, cache_key="mp", batch_size=worker + 2, progress=False,
                        max_in_memory=4 if worker == 0 else None)  # worker 0 rereads from disk
pool = [f"prompt {i}" for i in range(4 * rounds + 4)]
open(os.path.join(sync, str(worker)), "w").close()
while len(os.listdir(sync)) < n_workers:  # start together
    time.sleep(0.002)
returned = {}
for r in range(rounds):  # all workers walk one window of prompts, each in its own order, plus two repeats
    prompts = [*rng.permutation(pool[4 * r : 4 * r + 8]), *rng.choice(pool[: 4 * r + 8], 2)]
    for prompt, image in zip(prompts, generator(prompts)):
        returned.setdefault(prompt, set()).add(pixel_hash(image))
json.dump({"generated": generator.n_generated, "from_cache": generator.n_from_cache,
           "returned": {p: sorted(h) for p, h in returned.items()}, "made": made,
           "keys": {p: generator.key(p) for p in returned}}, open(out, "w"))
"""


def test_concurrent_processes_publish_each_key_once_and_all_use_the_stored_image(tmp_path):
    n_workers, rounds = 3, 15
    (tmp_path / "sync").mkdir()
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "cache"), str(tmp_path / "sync"),
                                 str(w), str(n_workers), str(rounds), str(tmp_path / f"{w}.json")],
                                env=ENV, stderr=subprocess.PIPE, text=True)
               for w in range(n_workers)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read()
        assert "Warning" not in worker.stderr.read()  # no entry ever failed verification
    results = [json.loads((tmp_path / f"{w}.json").read_text()) for w in range(n_workers)]

    cache = ImageCache(tmp_path / "cache", read_only=True)
    key_of = {p: k for result in results for p, k in result["keys"].items()}
    entries = list(cache.entries())
    assert len(entries) == len(key_of) == len(list((tmp_path / "cache").rglob("*.png")))  # one per key, no orphans
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stored = {p: pixel_hash(cache.get(k)) for p, k in key_of.items()}  # every entry decodes and verifies
    made = {}
    for result in results:
        assert result["keys"] == {p: key_of[p] for p in result["keys"]}
        for prompt, hashes in result["returned"].items():
            assert hashes == [stored[prompt]]  # one image per key in each process, and it is the stored one
        for prompt, hashes in result["made"].items():
            made.setdefault(prompt, []).extend(hashes)
    assert all(stored[p] in hashes for p, hashes in made.items())  # each stored image is one a process made
    generated = sum(r["generated"] for r in results)
    lost = sum(h != stored[p] for p, hashes in made.items() for h in hashes)
    assert generated == sum(map(len, made.values())) and lost == generated - len(key_of)
    print(f"\n{n_workers} processes x {rounds} rounds: {len(key_of)} keys, {generated} images generated, "
          f"{len(entries)} published, {lost} generated images lost the race (the stored one was used)")


def test_tiny_stable_diffusion_writers_with_different_batch_sizes_agree_on_the_stored_image(tmp_path):
    """The race with a real pipeline, in one process: while the batch-of-1 writer generates, a batch-of-4 writer
    (the "other process") publishes the same keys; the first gets the published images, not its own."""
    from captum_diffusion.testing import tiny_stable_diffusion

    pipe = tiny_stable_diffusion("sd1", seed=0)
    prompts = [f"a red circle {i}" for i in range(4)]
    first = TextToImage(pipe, num_inference_steps=2, progress=False, cache_dir=tmp_path, batch_size=4)
    second = TextToImage(pipe, num_inference_steps=2, progress=False, cache_dir=tmp_path, batch_size=1)
    published, generate = [], second.generate

    def racing(batch):
        published.extend(first(prompts))  # meanwhile the other writer publishes all four, in one batch of 4
        return generate(batch)

    second.generate = racing
    images = second(prompts)
    assert (second.n_generated, first.n_generated) == (1, 4)  # published meanwhile: 3 prompts not generated
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stored = [ImageCache(tmp_path).get(first.key(p)) for p in prompts]
    assert all(map(same, images, stored)) and all(map(same, published, stored))


# -------------------------------------------------------------------------------------- 3. killed writes


def test_temporaries_of_killed_or_old_writes_are_removed_when_a_cache_opens(tmp_path):
    (tmp_path / "ab").mkdir()
    killed = subprocess.run(  # a writer killed (SIGKILL) after writing its temporary file, before publishing
        [sys.executable, "-c", "import os, signal; from pathlib import Path; from captum_diffusion.generation.cache "
         "import _write_temporary; _write_temporary(Path(os.sys.argv[1]), lambda f: f.write(b'half'));"
         "os.kill(os.getpid(), signal.SIGKILL)", str(tmp_path / "ab" / "ab2.png")], env=ENV)
    assert killed.returncode == -9
    host = cache_module._HOST
    live = tmp_path / "ab" / f".ab3.png.{host}.{os.getpid()}.00000000.tmp"        # a live writer on this host
    elsewhere = tmp_path / "ab" / f".ab4.png.0123abcd.{2**22 + 1}.00000000.tmp"   # another machine's writer
    old = tmp_path / "ab" / f".ab5.png.0123abcd.{2**22 + 1}.00000000.tmp"         # ... killed 11 minutes ago
    legacy = tmp_path / "ab" / ".ab6.png.x8k2q.tmp"                               # an old mkstemp name, old
    for path in (live, elsewhere, old, legacy):
        path.write_bytes(b"partial")
    for path in (old, legacy):
        os.utime(path, (time.time() - 660, time.time() - 660))
    assert len(list(tmp_path.rglob("*.tmp"))) == 5
    cache = ImageCache(tmp_path)  # the first in this process to open the folder
    assert sorted(tmp_path.rglob("*.tmp")) == sorted([live, elsewhere])
    cache.put("ab1", PIL.Image.new("RGB", (2, 2)))
    assert same(ImageCache(tmp_path).get("ab1"), PIL.Image.new("RGB", (2, 2)))
    assert sorted(tmp_path.rglob("*.tmp")) == sorted([live, elsewhere])


def test_entry_files_are_0644_and_a_relative_cache_dir_is_resolved_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    previous = os.umask(0o022)
    try:
        cache = ImageCache("relative/cache")
        assert cache.directory == tmp_path / "relative" / "cache" and cache.directory.is_absolute()
        os.chdir(tmp_path.parent)  # a later chdir does not move the cache
        cache.put("k1", PIL.Image.new("RGB", (2, 2)))
    finally:
        os.umask(previous)
    files = sorted((tmp_path / "relative" / "cache").rglob("k1.*"))
    assert [f.name for f in files] == ["k1.json", "k1.png"]
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in files)


def test_empty_cache_dir_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for bad in ("", "  "):
        with pytest.raises(ValueError, match="cache_dir must name a folder"):
            ImageCache(bad)
        with pytest.raises(ValueError, match="cache_dir"):
            t2i(bad)
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory


# ------------------------------------------------------------------------------- 4. disk errors mid-run


def test_disk_full_mid_run_keeps_images_and_counts_and_warns_once(tmp_path, monkeypatch):
    full = []
    write = cache_module._write_temporary

    def filling(final, writer):
        if full:
            raise OSError(28, "No space left on device")
        return write(final, writer)

    def fills_the_disk_after_one_batch(prompts, seed):
        images = paint(prompts, seed)
        full.append(True)
        return images

    monkeypatch.setattr(cache_module, "_write_temporary", filling)
    generator = t2i(tmp_path, fills_the_disk_after_one_batch, batch_size=2)
    prompts = [f"p{i}" for i in range(7)]
    with pytest.warns(UserWarning, match="No space left.*disk cache is off") as caught:
        images = generator(prompts)
    assert len([w for w in caught if "disk cache is off" in str(w.message)]) == 1
    assert generator.n_generated == 7 and all(same(a, b) for a, b in zip(images, paint(prompts, 0)))
    assert generator.cache.disk_error is not None
    assert len(list(tmp_path.rglob("*.json"))) == 0 and not list(tmp_path.rglob("*.tmp"))
    again = generator(prompts)  # still served from memory
    assert (generator.n_generated, generator.n_from_cache) == (7, 7) and all(map(same, images, again))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permission bits")
def test_cache_dir_made_read_only_mid_run(tmp_path):
    def locks_the_cache(prompts, seed):
        for folder in [tmp_path, *tmp_path.iterdir()]:
            folder.chmod(0o555)
        return paint(prompts, seed)

    generator = t2i(tmp_path, locks_the_cache, batch_size=2)
    try:
        with pytest.warns(UserWarning, match="disk cache is off"):
            images = generator([f"p{i}" for i in range(7)])
    finally:
        for folder in [tmp_path, *tmp_path.iterdir()]:
            folder.chmod(0o755)
    assert generator.n_generated == 7 and len(images) == 7


def test_filesystem_without_hard_links_still_caches(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(cache_module.os, "link", no_links)
    first = t2i(tmp_path)
    images = first(["a", "b"])
    second = t2i(tmp_path)
    assert all(map(same, images, second(["a", "b"]))) and second.n_from_cache == 2
    assert not list(tmp_path.rglob("*.tmp"))


# ---------------------------------------------------------------------------------- 5. cache management


def _cache_with_two_models(directory: Path) -> tuple[TextToImage, TextToImage]:
    def other(prompts, seed):
        return [PIL.Image.new("RGB", (8, 8), "white") for _ in prompts]

    a = t2i(directory)
    b = TextToImage(other, cache_dir=directory, cache_key="white-v1", progress=False, seed=3)
    a(["one", "two", "three"])
    b(["one"])
    for i, key in enumerate([a.key("one"), a.key("two"), a.key("three"), b.key("one")]):
        when = time.time() - 86400 * (10 - i)  # "one" of a is the oldest, b's the newest
        for path in entry_files(directory, key):
            os.utime(path, (when, when))
    return a, b


def test_entries_and_disk_usage(tmp_path):
    a, b = _cache_with_two_models(tmp_path)
    entries = {e.key: e for e in ImageCache(tmp_path).entries()}
    assert set(entries) == {a.key(p) for p in ("one", "two", "three")} | {b.key("one")}
    record = entries[b.key("one")]
    assert record.prompt == "one" and record.identity == b.identity and record.settings["seed"] == 3
    assert record.bytes == sum(p.stat().st_size for p in entry_files(tmp_path, b.key("one")))
    assert abs(record.mtime - (time.time() - 86400 * 7)) < 5
    assert ImageCache(tmp_path).disk_usage() == sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())


def test_prune_by_model_age_and_size(tmp_path):
    a, b = _cache_with_two_models(tmp_path)
    cache = ImageCache(tmp_path)
    assert [e.key for e in cache.prune(identity="white-v1")] == [b.key("one")]
    assert [e.key for e in cache.prune(older_than=datetime.timedelta(days=9, hours=12))] == [a.key("one")]
    sizes = {e.key: e.bytes for e in cache.entries()}
    removed = cache.prune(max_bytes=sizes[a.key("three")])  # oldest first until it fits
    assert [e.key for e in removed] == [a.key("two")]
    assert [e.key for e in cache.entries()] == [a.key("three")] and cache.prune(max_bytes=10**9) == []
    assert cache.get(a.key("two")) is None and not any(p.exists() for p in entry_files(tmp_path, a.key("two")))
    with pytest.raises(ValueError, match="prune needs"):
        cache.prune()
    with pytest.raises(ValueError, match="older_than"):
        cache.prune(older_than=-1)
    with pytest.raises(ValueError, match="max_bytes"):
        cache.prune(max_bytes=1.5)


def test_sizes_and_durations_parse():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("500 MiB") == 500 * 2**20 and parse_size("10") == 10
    assert parse_duration("7d") == 7 * 86400 and parse_duration("1.5h") == 5400 and parse_duration("90") == 90
    for bad in ("2XB", "", "GB", "-1GB"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("7 days ago")


def test_cache_command_ls_du_prune(tmp_path, capsys):
    run = tmp_path / "run"
    a, b = _cache_with_two_models(run / "cache")
    assert cli.main(["cache", "ls", str(run)]) == 0  # a run folder: its cache is run/cache
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["written", "size", "model"] and len(listing) == 5
    assert listing[1].endswith("'one'") and "callable:paint-v1" in listing[1]
    assert cli.main(["cache", "du", str(run / "cache")]) == 0
    usage = capsys.readouterr().out
    assert "3 entries  callable:paint-v1" in usage and "4 entries  total" in usage

    assert cli.main(["cache", "prune", str(run), "--model", "white-v1"]) == 0
    assert capsys.readouterr().out.startswith("removed 1 entries")
    assert cli.main(["cache", "prune", str(run), "--older-than", "9.5d"]) == 0
    assert capsys.readouterr().out.startswith("removed 1 entries")
    assert cli.main(["cache", "prune", str(run), "--max-size", "1B"]) == 0
    assert "0 left" in capsys.readouterr().out and not list((run / "cache").rglob("*.png"))


def test_cache_command_bad_input_exits_2(tmp_path, capsys):
    assert cli.main(["cache", "ls", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err and not (tmp_path / "missing").exists()
    assert cli.main(["cache", "prune", str(tmp_path), "--max-size", "2XB"]) == 2
    assert "size must be a number with a unit" in capsys.readouterr().err
    assert cli.main(["cache", "prune", str(tmp_path)]) == 2
    assert "prune needs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["cache", "ls"])
