"""TextToImage: per-prompt determinism, batching, the memory and disk caches, input validation."""
from __future__ import annotations

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch

from captum_diffusion.convert import as_rgb_image
from captum_diffusion.generation import ImageCache, TextToImage
from captum_diffusion.generation.cache import atomic_write
from captum_diffusion.testing import tiny_stable_diffusion

PROMPTS = ["a red circle", "", "a blue square", "red", "a circle on a square"]


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def same(a, b) -> bool:
    return pixels(a).shape == pixels(b).shape and np.array_equal(pixels(a), pixels(b))


@pytest.fixture(scope="module")
def sd1():
    return tiny_stable_diffusion("sd1", seed=0)


@pytest.fixture(scope="module")
def sd1_other_weights():
    return tiny_stable_diffusion("sd1", seed=1)


def t2i(pipe, **kwargs) -> TextToImage:
    kwargs = {"num_inference_steps": 2, "progress": False, **kwargs}
    return TextToImage(pipe, **kwargs)


class TinyTorchGenerator(torch.nn.Module):
    """A deterministic text-to-image callable: bag of byte embeddings + per-prompt seeded noise -> 16x16 RGB.

    Follows the diffusers convention: one ``torch.Generator`` per prompt, processed as one batch. ``calls`` logs the
    batches; it does not change the images, so it is left out of the cache identity."""

    cache_identity_exclude = ("calls",)

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.embed = torch.nn.Embedding(256, 8)
            self.conv = torch.nn.Conv2d(9, 3, 3, padding=1)
        self.calls = []

    @torch.no_grad()
    def forward(self, prompts, generator):
        self.calls.append(list(prompts))
        noise = torch.cat([torch.randn(1, 1, 16, 16, generator=g) for g in generator])
        codes = [torch.tensor(list(p.encode()) or [0]) for p in prompts]
        condition = torch.stack([self.embed(c).mean(0) for c in codes])[:, :, None, None].expand(-1, -1, 16, 16)
        x = torch.sigmoid(self.conv(torch.cat([condition, noise], dim=1)))
        return [(image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy() for image in x]


# ----------------------------------------------------------------------------------------------- determinism



def test_one_at_a_time_images_are_bit_identical_in_any_order_and_call(sd1):
    """batch_size=1: each image comes from its prompt and seed alone, whatever else is asked and in what order."""
    forward = t2i(sd1, batch_size=1)(PROMPTS)
    backward = t2i(sd1, batch_size=1)(PROMPTS[::-1])[::-1]
    alone = [t2i(sd1, batch_size=1)([prompt])[0] for prompt in PROMPTS]
    for a, b, c in zip(forward, backward, alone):
        assert a.mode == "RGB" and a.size == (32, 32)
        assert same(a, b) and same(a, c)
    assert not same(forward[0], forward[2])  # the prompt matters
    assert not same(forward[0], t2i(sd1, seed=1)([PROMPTS[0]])[0])  # and so does the seed


@pytest.mark.parametrize("layout", ["sd1", "sd2", "sdxl"])
def test_batched_image_equals_alone_up_to_kernel_rounding(layout, sd1):
    """Batched, in any grouping and order, an image is the one made alone up to float rounding of batched kernels:
    at most one grey level, on under 1% of the values (most come out bit-identical)."""
    pipe = sd1 if layout == "sd1" else tiny_stable_diffusion(layout, seed=0)
    alone = t2i(pipe, batch_size=1)(PROMPTS)
    order = [4, 2, 0, 3, 1]
    for batch_size, prompts in ((5, PROMPTS), (3, PROMPTS), (2, [PROMPTS[i] for i in order])):
        images = t2i(pipe, batch_size=batch_size)(prompts)
        for prompt, image in zip(prompts, images):
            difference = np.abs(pixels(image) - pixels(alone[PROMPTS.index(prompt)]))
            assert difference.max() <= 1 and (difference > 0).mean() < 0.01, (layout, batch_size, prompt)


def test_latents_are_per_prompt_and_seeded(sd1):
    generator = t2i(sd1, seed=7, height=48, width=32)
    latents = generator.pipeline_kwargs(3)["latents"]
    assert latents.shape == (3, 4, 24, 16)  # (n, unet in_channels, height / vae_scale_factor, width / ...)
    expected = torch.randn((1, 4, 24, 16), generator=torch.Generator().manual_seed(7))
    for row in latents:
        assert torch.equal(row[None], expected)
    assert generator(["a red circle"])[0].size == (32, 48)  # PIL size is (width, height)


def test_empty_prompt_is_an_unconditional_generation(sd1):
    generator = t2i(sd1)
    empty, full = generator(["", "a red circle"])
    assert empty.size == full.size and not same(empty, full)


# ------------------------------------------------------------------------------------------------ memory cache


def test_cache_hits_misses_and_counters(sd1):
    generator = t2i(sd1, batch_size=2)
    first = generator(["a red circle", "red", "a red circle"])
    assert (generator.n_generated, generator.n_from_cache) == (2, 1)
    assert same(first[0], first[2])
    second = generator(["red", "circle", "a red circle"])
    assert (generator.n_generated, generator.n_from_cache) == (3, 3)
    assert same(second[0], first[1]) and same(second[2], first[0])
    # returned images are copies: mutating one does not touch the cache
    second[0].paste((0, 0, 0), (0, 0, 32, 32))
    assert same(generator(["red"])[0], first[1])
    assert generator.n_generated + generator.n_from_cache == 7


def test_cache_key_is_generator_settings_seed_and_prompt(sd1, sd1_other_weights):
    base = t2i(sd1)
    assert base.key("red") == t2i(sd1).key("red")
    assert base.key("red") != base.key("red ")
    assert base.key("red") != t2i(sd1, seed=1).key("red")
    assert base.key("red") != t2i(sd1, num_inference_steps=3).key("red")
    assert base.key("red") != t2i(sd1, guidance_scale=1.0).key("red")
    assert base.key("red") != t2i(sd1, height=48).key("red")
    assert base.key("red") != t2i(sd1_other_weights).key("red")


# -------------------------------------------------------------------------------------------------- disk cache


def test_disk_cache_survives_a_new_instance(sd1, tmp_path):
    first = t2i(sd1, cache_dir=tmp_path, batch_size=4)
    images = first(PROMPTS)
    pngs = sorted(tmp_path.rglob("*.png"))
    assert len(pngs) == len(PROMPTS) and len(list(tmp_path.rglob("*.json"))) == len(PROMPTS)
    assert not list(tmp_path.rglob("*.tmp"))
    metadata = json.loads(pngs[0].with_suffix(".json").read_text())
    assert metadata["prompt"] in PROMPTS and metadata["seed"] == 0 and metadata["num_inference_steps"] == 2
    with PIL.Image.open(pngs[0]) as png:
        assert png.format == "PNG" and png.mode == "RGB"

    second = t2i(sd1, cache_dir=tmp_path)
    again = second(PROMPTS)
    assert (second.n_generated, second.n_from_cache) == (0, len(PROMPTS))
    assert all(same(a, b) for a, b in zip(images, again))  # lossless


def test_disk_cache_does_not_mix_generators(sd1, sd1_other_weights, tmp_path):
    other = sd1_other_weights
    a = t2i(sd1, cache_dir=tmp_path)(["a red circle"])[0]
    b_generator = t2i(other, cache_dir=tmp_path)
    b = b_generator(["a red circle"])[0]
    assert b_generator.n_generated == 1 and not same(a, b)


def test_corrupt_png_is_recomputed_with_a_warning(sd1, tmp_path):
    original = t2i(sd1, cache_dir=tmp_path)(["a red circle"])[0]
    (png,) = tmp_path.rglob("*.png")
    png.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    generator = t2i(sd1, cache_dir=tmp_path)
    with pytest.warns(UserWarning, match="unreadable"):
        image = generator(["a red circle"])[0]
    assert generator.n_generated == 1 and same(image, original)
    with PIL.Image.open(png) as repaired:
        assert same(repaired.convert("RGB"), original)


def test_interrupted_run_keeps_finished_batches(tmp_path):
    model = TinyTorchGenerator()
    prompts = [f"prompt {i}" for i in range(6)]

    def failing(prompts, generator):
        if any(p.endswith(("4", "5")) for p in prompts):
            raise KeyboardInterrupt
        return model(prompts, generator)

    with pytest.raises(KeyboardInterrupt):
        TextToImage(failing, batch_size=2, cache_dir=tmp_path, cache_key="tiny", progress=False)(prompts)
    assert len(list(tmp_path.rglob("*.json"))) == 4 and not list(tmp_path.rglob("*.tmp"))
    resumed = TextToImage(model, batch_size=2, cache_dir=tmp_path, cache_key="tiny", progress=False)
    resumed(prompts)  # the same cache_key names the same generator: the four finished images are reused
    assert (resumed.n_generated, resumed.n_from_cache) == (2, 4)
    assert model.calls[-1] == prompts[4:] and len(model.calls) == 3


def test_atomic_write_leaves_old_file_or_nothing(tmp_path):
    target = tmp_path / "entry.png"

    def broken(file):
        file.write(b"half an image")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    atomic_write(target, lambda file: file.write(b"complete"))
    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"complete" and list(tmp_path.iterdir()) == [target]


def test_unwritable_cache_dir_is_an_error_at_construction(sd1, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="cache_dir .* not a writable directory"):
        t2i(sd1, cache_dir=blocker / "cache")
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="cache_dir"):
            ImageCache(locked)


# ------------------------------------------------------------------------------------------------- validation


def test_prompt_past_token_limit_names_the_limit(sd1):
    generator = t2i(sd1)
    assert generator.token_limit == 77
    with pytest.raises(ValueError, match=r"at most 77 .*model_max_length"):
        generator(["a red circle", "red " * 80])
    assert generator.n_generated == 0  # nothing made before the check
    generator(["red " * 75])  # 75 words + start/end = 77 tokens: allowed


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"height": 33}, "height must be a multiple"),
        ({"guidance_scale": "high"}, "guidance_scale"),
    ],
)
def test_bad_settings(sd1, kwargs, error):
    with pytest.raises(ValueError, match=error):
        t2i(sd1, **kwargs)


def test_bad_prompts_and_generators(sd1):
    generator = t2i(sd1)
    with pytest.raises(TypeError, match="single str"):
        generator("a red circle")
    with pytest.raises(TypeError, match=r"prompts\[1\]"):
        generator(["a", 3])
    with pytest.raises(TypeError, match="pipeline_or_callable"):
        TextToImage(42)


# ------------------------------------------------------------------------------------------ callable generators


def test_callable_with_generators_is_deterministic_per_prompt():
    model = TinyTorchGenerator()
    prompts = ["a red circle", "", "blue", "a blue square"]
    batched = TextToImage(model, seed=3, batch_size=4, progress=False)(prompts)
    alone = [TextToImage(model, seed=3, batch_size=1, progress=False)([p])[0] for p in reversed(prompts)][::-1]
    assert [im.size for im in batched] == [(16, 16)] * 4 and batched[0].mode == "RGB"
    assert all(same(a, b) for a, b in zip(batched, alone))
    assert not same(batched[0], TextToImage(model, seed=4, progress=False)(["a red circle"])[0])
    assert model.calls[0] == prompts


def test_callable_with_seed_keyword_and_plain_callable():
    seen = []

    def with_seed(prompts, seed, height=8, width=8):
        seen.append(seed)
        return [PIL.Image.new("L", (width, height), color=len(p) + seed) for p in prompts]

    images = TextToImage(with_seed, seed=5, height=6, progress=False)(["ab", "abc"])
    assert seen == [5] and images[0].mode == "RGB" and images[1].getpixel((0, 0)) == (8, 8, 8)
    assert images[0].size == (8, 6)  # height was passed, width left to the callable's default

    def plain(prompts):
        return [np.full((4, 4, 3), len(p), np.uint8) for p in prompts]

    generator = TextToImage(plain, progress=False)
    assert generator.pipeline is None and generator(["abcd"])[0].getpixel((1, 1)) == (4, 4, 4)


def test_callable_returning_wrong_types():
    with pytest.raises(ValueError, match=r"generator output \[0\].*\[0, 1\]"):  # floats must lie in [0, 1]
        TextToImage(lambda prompts: [np.full((4, 4, 3), 2.0, np.float32) for _ in prompts], progress=False)(["a"])
    with pytest.raises(TypeError, match="list of PIL images"):
        TextToImage(lambda prompts: PIL.Image.new("RGB", (4, 4)), progress=False)(["a"])
    with pytest.raises(TypeError, match=r"generator output \[0\]"):
        TextToImage(lambda prompts: ["not an image" for _ in prompts], progress=False)(["a"])
    with pytest.raises(ValueError, match="returned 1 images for 2 prompts"):
        TextToImage(lambda prompts: [PIL.Image.new("RGB", (4, 4))], progress=False)(["a", "b"])
    with pytest.raises(ValueError, match="a prompts -> images callable takes none"):  # not silently ignored
        TextToImage(lambda prompts: [PIL.Image.new("RGB", (4, 4))] * len(prompts), max_sequence_length=77)
    received = []

    def t5_generator(prompts, max_sequence_length):
        received.append(max_sequence_length)
        return [PIL.Image.new("RGB", (4, 4))] * len(prompts)

    TextToImage(t5_generator, max_sequence_length=77, progress=False)(["a"])
    assert received == [77]  # a callable that names it gets it


def test_lambda_needs_cache_key_for_disk_cache(tmp_path):
    with pytest.raises(ValueError, match="cache_key"):
        TextToImage(lambda prompts: prompts, cache_dir=tmp_path)
    keyed = TextToImage(lambda prompts: [PIL.Image.new("RGB", (4, 4))] * len(prompts), cache_dir=tmp_path,
                        cache_key="blank-v1", progress=False)
    assert keyed(["x"])[0].size == (4, 4) and len(list(tmp_path.rglob("*.png"))) == 1


def test_progress_bar_on_and_off(capsys):
    model = TinyTorchGenerator()
    TextToImage(model, progress=True, batch_size=1)(["a", "b"])
    assert "generating" in capsys.readouterr().err
    TextToImage(model, progress=False, batch_size=1)(["a", "b"])
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------------------------- image inputs


def test_as_rgb_image_conversions():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(np.asarray(as_rgb_image(rgb)), rgb)
    gray = as_rgb_image(np.full((2, 3), 7, np.uint8))
    assert gray.mode == "RGB" and gray.getpixel((0, 0)) == (7, 7, 7)
    transparent = PIL.Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    assert as_rgb_image(transparent).getpixel((0, 0)) == (255, 255, 255)  # alpha composited on white
    opaque = PIL.Image.new("RGBA", (2, 2), (10, 20, 30, 255))
    assert as_rgb_image(opaque).getpixel((0, 0)) == (10, 20, 30)
    for bad in (np.zeros((2, 2, 3), np.int32), np.zeros((2, 2, 2), np.uint8), torch.zeros(2, 2, 3), "x.png"):
        with pytest.raises(TypeError, match="image"):
            as_rgb_image(bad)
    for bad in (np.zeros((0, 3, 3), np.uint8), np.full((2, 2), np.nan), PIL.Image.new("RGB", (0, 4))):
        with pytest.raises(ValueError, match="image"):
            as_rgb_image(bad)


def test_images_of_any_depth_and_dtype_convert_to_8_bit_rgb():
    """16-bit, float [0, 1] and bool images keep their brightness (no 99.6% white, no black floats)."""
    grey16 = np.full((2, 3), 32896, np.uint16)                             # 50.2% grey in 16 bits
    assert as_rgb_image(grey16).getpixel((0, 0)) == (128, 128, 128)
    assert as_rgb_image(PIL.Image.fromarray(grey16)).getpixel((0, 0)) == (128, 128, 128)
    assert as_rgb_image(np.full((2, 2, 3), 0.5, np.float32)).getpixel((0, 0)) == (128, 128, 128)
    assert as_rgb_image(np.eye(2, dtype=bool)).getpixel((0, 0)) == (255, 255, 255)


def test_bounded_memory_cache_reloads_from_disk(sd1, tmp_path):
    generator = t2i(sd1, cache_dir=tmp_path, max_in_memory=2)
    first = generator(PROMPTS)
    assert len(generator.cache) == 2 and generator.n_generated == len(PROMPTS)
    again = generator(PROMPTS)  # the three dropped ones come back from disk, not from the pipeline
    assert generator.n_generated == len(PROMPTS) and all(same(a, b) for a, b in zip(first, again))
    memory_only = t2i(sd1, max_in_memory=1)
    memory_only(["red", "blue"])
    memory_only(["red"])  # dropped without a disk copy: generated again, and counted
    assert memory_only.n_generated == 3
    with pytest.raises(ValueError, match="max_in_memory"):
        ImageCache(max_in_memory=0)


# --------------------------------------------------------------------------- back-ends, keys, regeneration, settings


def test_text_to_image_returns_the_back_end_of_its_source(sd1):
    from captum_diffusion.generation.text_to_image import CallableTextToImage, PipelineTextToImage
    from captum_diffusion.protocols import CachedGenerator, Generator

    over_pipeline = t2i(sd1)
    over_callable = TextToImage(TinyTorchGenerator(), progress=False)
    assert type(over_pipeline) is PipelineTextToImage and type(over_callable) is CallableTextToImage
    for generator in (over_pipeline, over_callable):
        assert isinstance(generator, TextToImage) and isinstance(generator, CachedGenerator)
        assert isinstance(generator, Generator)
    assert over_pipeline.family.name == "unet" and over_callable.pipeline is None and over_callable.family is None
    with pytest.raises(TypeError, match="pipeline_or_callable"):
        TextToImage(5)


def test_cache_keys_of_a_batch_equal_the_keys_of_each_prompt(sd1, monkeypatch):
    from captum_diffusion.generation import text_to_image

    generator = t2i(sd1, seed=3)
    expected = [generator.key(prompt) for prompt in PROMPTS]
    derived = []
    monkeypatch.setattr(text_to_image, "pipeline_identity",
                        lambda pipe, derive=text_to_image.pipeline_identity: derived.append(1) or derive(pipe))
    assert generator.cache_keys(PROMPTS) == expected and len(set(expected)) == len(PROMPTS)
    assert len(derived) == 1  # one derivation of the identity for the whole batch
    assert t2i(sd1, seed=4).cache_keys(PROMPTS[:1]) != expected[:1]  # the seed is in the key


def test_regenerate_stores_only_the_missing_images_and_the_cache_then_serves_the_same_pixels(sd1, tmp_path):
    prompts = ["a red circle", "a blue square", "red", "a circle on a square"]
    first = t2i(sd1, cache_dir=tmp_path, batch_size=4)
    originals = first(prompts)
    keys = first.cache_keys(prompts)
    metadata = json.loads((tmp_path / keys[0][:2] / f"{keys[0]}.json").read_text())
    for i in (1, 3):  # a run killed while storing its batch: two of four entries are missing
        for suffix in (".json", ".png"):
            os.remove(tmp_path / keys[i][:2] / f"{keys[i]}{suffix}")
    second = t2i(sd1, cache_dir=tmp_path, batch_size=4)
    assert second.missing(prompts) == [1, 3]
    assert second.regenerate(prompts) == [1, 3] and second.n_generated == 4  # the whole batch made again
    stored = json.loads((tmp_path / keys[1][:2] / f"{keys[1]}.json").read_text())
    assert set(stored) == set(metadata) and stored["generator"] == metadata["generator"]
    assert stored["prompt"] == prompts[1] and stored["num_inference_steps"] == 2
    third = t2i(sd1, cache_dir=tmp_path, batch_size=4)
    again = third(prompts)
    assert third.n_generated == 0 and all(map(same, again, originals))  # bit-identical: the same batch
    assert second.regenerate(prompts) == []  # all cached: nothing stored


def test_generation_settings_object_and_keywords_give_the_same_generator(sd1):
    from captum_diffusion.generation import GenerationSettings

    by_keywords = t2i(sd1, guidance_scale=3.0)
    by_settings = TextToImage(sd1, progress=False, settings=GenerationSettings(num_inference_steps=2),
                              guidance_scale=3.0)
    assert by_settings.generation_settings == by_keywords.generation_settings == GenerationSettings(
        num_inference_steps=2, guidance_scale=3.0, height=32, width=32)  # the size in effect: the default
    assert by_settings.key("red") == by_keywords.key("red")
    with pytest.raises(TypeError, match="num_inference_steps given both"):
        TextToImage(sd1, num_inference_steps=3, settings=GenerationSettings(num_inference_steps=2))
    with pytest.raises(TypeError, match="settings must be a GenerationSettings"):
        TextToImage(sd1, settings={"num_inference_steps": 2})


def test_a_cheaper_proxy_generator_has_its_own_cache_keys(sd1, tmp_path):
    full = t2i(sd1, num_inference_steps=3, cache_dir=tmp_path)
    proxy = TextToImage(sd1, progress=False, cache_dir=tmp_path,
                        settings=full.generation_settings.replace(num_inference_steps=1))
    assert proxy.num_inference_steps == 1 and proxy.height == full.height
    assert set(proxy.cache_keys(PROMPTS)).isdisjoint(full.cache_keys(PROMPTS))
    image = full(["red"])[0]
    assert proxy.missing(["red"]) == [0]  # the full image is never served as the proxy's
    assert not same(proxy(["red"])[0], image) and proxy.n_generated == 1
