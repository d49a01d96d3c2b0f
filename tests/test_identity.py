"""Generator identity: what keys the image cache. Different generators never share images, a generator changed
after its ``TextToImage`` was made gets a new key at the next call, an unchanged one keeps its key (in another
process too), and a generator whose identity cannot be derived needs ``cache_key`` for the on-disk cache."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
import timeit
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from captum_diffusion import shapes_world
from captum_diffusion.generation import TextToImage, identity
from captum_diffusion.generation.gan import AffineGenerator, CLIPConditionedGenerator
from captum_diffusion.generation.text_to_image import noise_seed
from captum_diffusion.testing import tiny_clip, tiny_stable_diffusion

REPO = Path(__file__).resolve().parents[1]


def grey(image) -> int:
    return int(np.asarray(image)[0, 0, 0])


def paint(prompts, level=0):
    """A module-level generator: a flat grey image of ``level`` per prompt."""
    return [PIL.Image.new("RGB", (4, 4), (level,) * 3) for _ in prompts]


class Painter:
    """A callable class: its constructor argument decides the images."""

    def __init__(self, level):
        self.level = level

    def __call__(self, prompts):
        return paint(prompts, self.level)


class Shader(torch.nn.Module):
    """A module whose parameter decides the images, called through a bound method."""

    def __init__(self, level):
        super().__init__()
        self.level = torch.nn.Parameter(torch.tensor(float(level)))

    def paint(self, prompts):
        return paint(prompts, int(self.level.item()))


class Guarded:
    """A callable class holding state of no derivable identity (a lock)."""

    def __init__(self, lock):
        self.lock = lock

    def __call__(self, prompts):
        with self.lock:
            return paint(prompts, 7)


def encode_with(model, tokenizer, texts):
    """A module-level text encoder for ``CLIPConditionedGenerator`` (through ``functools.partial``)."""
    tokens = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@pytest.fixture(scope="module")
def clips():
    return tiny_clip(seed=0), tiny_clip(seed=1)


def nets(n=2):
    result = []
    for seed in range(n):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            result.append(AffineGenerator(cond_dim=32, z_dim=8, channels=8, image_size=16).eval())
    return result


def t2i(generator, **kwargs) -> TextToImage:
    return TextToImage(generator, progress=False, **kwargs)


def sd(seed=0):
    return tiny_stable_diffusion("sd1", seed=seed)


def sd_t2i(pipe, **kwargs) -> TextToImage:
    return TextToImage(pipe, num_inference_steps=2, progress=False, **kwargs)


# --------------------------------------------------------------------------- 1. different generators never collide


def test_instances_of_one_callable_class_do_not_share_the_disk_cache(tmp_path):
    assert grey(t2i(Painter(10), cache_dir=tmp_path)(["x"])[0]) == 10
    other = t2i(Painter(200), cache_dir=tmp_path)
    assert grey(other(["x"])[0]) == 200 and other.n_generated == 1
    assert t2i(Painter(10)).identity == t2i(Painter(10)).identity  # equal state, equal identity


def test_partials_with_different_arguments_do_not_share_the_disk_cache(tmp_path):
    assert grey(t2i(functools.partial(paint, level=10), cache_dir=tmp_path)(["x"])[0]) == 10
    other = t2i(functools.partial(paint, level=200), cache_dir=tmp_path)
    assert grey(other(["x"])[0]) == 200 and other.n_generated == 1


def test_bound_methods_of_different_modules_do_not_share_the_disk_cache(tmp_path):
    assert grey(t2i(Shader(10).paint, cache_dir=tmp_path)(["x"])[0]) == 10
    other = t2i(Shader(200).paint, cache_dir=tmp_path)
    assert grey(other(["x"])[0]) == 200 and other.n_generated == 1


def test_gan_behind_a_lambda_with_other_weights_gets_another_identity(clips, tmp_path):
    (model, processor), _ = clips
    tokenizer = processor.tokenizer
    net_a, net_b = nets()
    gan_a = CLIPConditionedGenerator(lambda z, s: net_a(z, s), model, tokenizer, z_dim=8)
    gan_b = CLIPConditionedGenerator(lambda z, s: net_b(z, s), model, tokenizer, z_dim=8)
    assert t2i(gan_a).identity != t2i(gan_b).identity  # in memory: the nets in the closures are fingerprinted
    with pytest.raises(ValueError, match=r"lambda.*cache_key"):  # on disk a lambda needs a name
        t2i(gan_a, cache_dir=tmp_path)
    # one cache_key for both: the key names the code, the weights are still fingerprinted
    first = t2i(gan_a, cache_dir=tmp_path, cache_key="affine-gan")(["a red circle"])[0]
    other = t2i(gan_b, cache_dir=tmp_path, cache_key="affine-gan")
    second = other(["a red circle"])[0]
    assert other.n_generated == 1 and not np.array_equal(np.asarray(first), np.asarray(second))


def test_gans_with_different_text_encoders_do_not_share_the_disk_cache(clips, tmp_path):
    (model_a, processor), (model_b, _) = clips
    net = nets(1)[0]
    gans = [CLIPConditionedGenerator(net, functools.partial(encode_with, model, processor.tokenizer), z_dim=8)
            for model in (model_a, model_b)]
    first = t2i(gans[0], cache_dir=tmp_path)(["a red circle"])[0]  # no cache_key needed: all of it is known
    other = t2i(gans[1], cache_dir=tmp_path)
    second = other(["a red circle"])[0]
    assert other.n_generated == 1 and not np.array_equal(np.asarray(first), np.asarray(second))
    again = t2i(gans[0], cache_dir=tmp_path)
    again(["a red circle"])
    assert again.n_from_cache == 1  # n_forward moved, the identity did not


# ------------------------------------------------------------------- 2. a generator changed later gets a new key


def test_swapped_scheduler_never_reads_or_writes_the_old_models_images(tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    pipe = sd()
    generator = sd_t2i(pipe, cache_dir=tmp_path)
    before = generator.key("red")
    ddim = generator(["red"])[0]
    original_scheduler = pipe.scheduler
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    assert generator.key("red") != before
    dpm = generator(["red"])[0]
    assert (generator.n_generated, generator.n_from_cache) == (2, 0)
    assert not np.array_equal(np.asarray(ddim), np.asarray(dpm))
    fresh = sd_t2i(sd(), cache_dir=tmp_path)  # the original model, later: its own image, not the DPM one
    assert np.array_equal(np.asarray(fresh(["red"])[0]), np.asarray(ddim)) and fresh.n_from_cache == 1
    pipe.scheduler = original_scheduler
    assert generator.key("red") == before  # content, not history


def test_weights_edited_in_place_change_the_key_and_back(tmp_path):
    pipe = sd()
    generator = sd_t2i(pipe, cache_dir=tmp_path)
    before = generator.key("red")
    original = generator(["red"])[0]
    weight = pipe.unet.conv_in.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.mul_(1.5)  # an in-place edit (load_state_dict, a fused adapter...) after TextToImage was made
    assert generator.key("red") != before
    edited = generator(["red"])[0]
    assert generator.n_generated == 2 and not np.array_equal(np.asarray(original), np.asarray(edited))
    with torch.no_grad():
        weight.copy_(saved)
    assert generator.key("red") == before


def test_edits_through_data_and_replaced_tensors_and_components_change_the_key():
    pipe, other = sd(), sd(seed=1)
    generator = sd_t2i(pipe)
    keys = [generator.key("red")]
    pipe.unet.conv_in.weight.data += 0.01  # bypasses torch's version counter: seen through the sampled values
    keys.append(generator.key("red"))
    pipe.unet.conv_in.bias = torch.nn.Parameter(torch.zeros_like(pipe.unet.conv_in.bias))  # a new tensor
    keys.append(generator.key("red"))
    pipe.unet.conv_in.add_module("extra", torch.nn.Linear(2, 2))  # new parameters (a loaded adapter's layers)
    keys.append(generator.key("red"))
    pipe.text_encoder = other.text_encoder  # a replaced component
    keys.append(generator.key("red"))
    pipe.vae.train()
    assert len(set(keys)) == len(keys)


def test_only_changed_tensors_are_rehashed(monkeypatch):
    pipe = sd()
    generator = sd_t2i(pipe)
    hashed = []
    original_hash = identity.hash_tensor
    monkeypatch.setattr(identity, "hash_tensor", lambda tensor: hashed.append(tensor) or original_hash(tensor))
    _ = generator.identity
    assert hashed == []  # nothing changed since __init__
    with torch.no_grad():
        pipe.unet.conv_out.bias.add_(1.0)
    _ = generator.identity
    assert len(hashed) == 1 and hashed[0] is pipe.unet.conv_out.bias
    identity.forget_fingerprints()
    _ = generator.identity
    assert len(hashed) > 100  # everything again


def test_meta_weights_get_a_token_of_their_own():
    with torch.device("meta"):
        a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    assert identity.derive_identity(a).digest == identity.derive_identity(a).digest
    assert identity.derive_identity(a).digest != identity.derive_identity(b).digest  # unknown contents never match


@pytest.mark.skipif(not shapes_world.weights_available(), reason="ShapesWorld weights not shipped")
def test_identity_check_is_cheap_against_a_generation_on_shapes_world():
    """Prints the measurements: ``pytest -s tests/test_identity.py -k cheap``."""
    pipe, _ = shapes_world.load_shapes_world()
    identity.forget_fingerprints()
    start = time.perf_counter()
    identity.derive_identity(pipe)
    first = time.perf_counter() - start
    generator = TextToImage(pipe, progress=False, batch_size=1, **shapes_world.DEFAULT_GENERATION.pipeline_kwargs())
    per_call = min(timeit.repeat(lambda: (generator.identity, generator.settings), number=5, repeat=3)) / 5
    start = time.perf_counter()
    generator(["a red circle"])
    generation = time.perf_counter() - start
    n_bytes = sum(t.numel() * t.element_size() for c in pipe.components.values() if isinstance(c, torch.nn.Module)
                  for t in c.state_dict().values())
    print(f"\nShapesWorld ({n_bytes / 2**20:.1f} MiB of weights): first full fingerprint {first * 1e3:.0f} ms, "
          f"identity + settings per call {per_call * 1e3:.1f} ms, one image {generation * 1e3:.0f} ms")
    assert per_call < 0.1 * generation  # measured ~3% on a 2-core CPU


# ------------------------------------------------------------------------------------- 3. every value is hashed


def test_one_token_embedding_row_changes_the_key():
    pipe = sd()
    generator = sd_t2i(pipe)
    before = generator.key("red")
    row = pipe.tokenizer.convert_tokens_to_ids("red</w>")  # one row of 32 values in 819 x 32
    embedding = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        embedding[row] += 0.5
    assert generator.key("red") != before
    assert sd_t2i(pipe).key("red") != before  # a fresh TextToImage too: every value is hashed, not a sample
    # an edit through .data bypasses the version counter and may miss the 4 sampled values: forget to rehash
    middle = generator.key("red")
    embedding.data[row + 1] += 0.5
    identity.forget_fingerprints()
    assert generator.key("red") != middle


# ------------------------------------------------------------------------ 4. unknown identity needs a cache_key


def test_callable_holding_opaque_state_needs_cache_key_on_disk_and_says_why(tmp_path):
    lock = threading.Lock()
    with pytest.raises(ValueError, match=r"lock.*cache_key"):
        t2i(Guarded(lock), cache_dir=tmp_path)
    assert grey(t2i(Guarded(lock), cache_dir=tmp_path, cache_key="guarded")(["x"])[0]) == 7
    # in memory: per-instance identities, so two opaque generators never share
    assert t2i(Guarded(lock)).identity != t2i(Guarded(lock)).identity
    assert t2i(lambda prompts: paint(prompts, 1)).identity != t2i(lambda prompts: paint(prompts, 1)).identity
    with pytest.raises(ValueError, match=r"lambda or local function.*cache_key"):
        t2i(lambda prompts: paint(prompts, 1), cache_dir=tmp_path)


def test_closure_and_defaults_are_walked():
    def painter(level):
        return lambda prompts, level=level: paint(prompts, level)

    # both local: per-instance in memory, yet what they capture is read (an edited captured module shows)
    shader = Shader(3)
    closure = t2i(lambda prompts: shader.paint(prompts))
    before = closure.identity
    with torch.no_grad():
        shader.level.add_(1)
    assert closure.identity != before
    assert identity.derive_identity(painter(1)).digest != identity.derive_identity(painter(2)).digest
    assert identity.derive_identity(functools.partial(paint, level=1)).unknown == []


# --------------------------------------------------------- 5. library versions and the scheduler config are keyed


def test_key_has_transformers_version_and_scheduler_config():
    from diffusers import DDIMScheduler
    import transformers

    pipe = sd()
    generator = sd_t2i(pipe)
    assert generator.settings["versions"]["transformers"] == transformers.__version__
    before = generator.key("red")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    assert generator.key("red") != before


# -------------------------------------------------------------- 6. scheduler noise is not the initial noise again


def test_ancestral_scheduler_noise_is_another_stream_than_the_latents(monkeypatch):
    from diffusers import EulerAncestralDiscreteScheduler
    from diffusers.schedulers import scheduling_euler_ancestral_discrete as euler

    pipe = sd()
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    injected = []
    draw = euler.randn_tensor
    monkeypatch.setattr(euler, "randn_tensor", lambda *args, **kwargs: injected.append(draw(*args, **kwargs)) or
                        injected[-1])
    generator = sd_t2i(pipe, seed=3, batch_size=1)
    alone = generator(["a red circle"])[0]
    latents = generator.pipeline_kwargs(1)["latents"]
    first_noise = injected[0]
    cosine = torch.nn.functional.cosine_similarity(first_noise.flatten(), latents.flatten(), dim=0)
    assert abs(cosine.item()) < 0.2, cosine  # independent, not the same (or a scaled) draw
    expected = torch.randn(latents.shape, generator=torch.Generator().manual_seed(noise_seed(3)))
    assert torch.equal(first_noise, expected)  # the documented stream: noise_seed(seed), per prompt
    # still per prompt: the same image alone and in a batch, in any position
    batched = sd_t2i(pipe, seed=3, batch_size=3)(["blue", "a red circle", ""])[1]
    difference = np.abs(np.asarray(batched, np.int16) - np.asarray(alone, np.int16))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


def test_noise_seed_is_deterministic_and_differs_from_the_seed():
    assert noise_seed(0) == noise_seed(0) != noise_seed(1)
    assert all(noise_seed(seed) != seed and 0 <= noise_seed(seed) < 2**63 for seed in range(100))


# --------------------------------------------------- 7. an unchanged model keeps its cache across processes

SCRIPT = """
import json, sys
import numpy as np
from captum_diffusion.generation import TextToImage
from captum_diffusion.testing import tiny_stable_diffusion

generator = TextToImage(tiny_stable_diffusion("sd1", seed=0), num_inference_steps=2, progress=False,
                        cache_dir=sys.argv[1])
images = generator(["a red circle", "", "blue"])
np.save(sys.argv[2], np.stack([np.asarray(image) for image in images]))
print(json.dumps({"generated": generator.n_generated, "from_cache": generator.n_from_cache,
                  "identity": generator.identity}))
"""


def test_unchanged_model_hits_the_disk_cache_in_a_new_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    runs = []
    for run in ("first", "second"):
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "cache"), str(tmp_path / f"{run}.npy")],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert (runs[0]["generated"], runs[1]["generated"], runs[1]["from_cache"]) == (3, 0, 3)
    assert runs[0]["identity"] == runs[1]["identity"]
    np.testing.assert_array_equal(np.load(tmp_path / "first.npy"), np.load(tmp_path / "second.npy"))
    # and this process, with its own identically built model, agrees
    assert sd_t2i(sd()).identity == runs[0]["identity"]
