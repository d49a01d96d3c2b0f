"""The ``device`` / ``dtype`` arguments on a GPU: the same explanations as on the CPU, on the shipped ShapesWorld.

Skipped where CUDA is absent (CI, the 2-core dev machine); run on a GPU machine with ``pytest tests/test_cuda.py``.
Starting latents are drawn on the CPU from each prompt's seed in every case, so the CPU and GPU runs start from
the same noise and differ only by kernel rounding (and by half precision where asked).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import shap_adapters.text as shap_text
from captum_diffusion.attention.daam import DAAM
from captum_diffusion.generation import TextToImage
from captum_diffusion.image.saliency import CLIPSaliency
from captum_diffusion.scoring import PromptScore
from captum_diffusion.shapes_world import DEFAULT_GENERATION, SINGLE_PROMPTS, load_shapes_world, render

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PROMPT = "a red circle"


def _explain(device, dtype=None) -> np.ndarray:
    pipe, clip = load_shapes_world(device=device, dtype=dtype)
    generator = TextToImage(pipe, seed=0, progress=False, **DEFAULT_GENERATION.pipeline_kwargs())
    return shap_text.explain_prompt(PROMPT, PromptScore(generator, clip, PROMPT), algorithm="exact",
                                    progress=False).values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_exact_shap_on_cuda_matches_the_cpu(dtype):
    cpu, cuda = _explain("cpu"), _explain("cuda", dtype)
    assert cuda.shape == cpu.shape == (3,)
    np.testing.assert_allclose(cuda, cpu, atol=0.03 if dtype == torch.float32 else 0.06)
    assert np.argmax(cuda) == np.argmax(cpu)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_clip_scores_on_cuda_match_the_cpu(dtype):
    images = [render(p, seed).image for seed, p in enumerate(SINGLE_PROMPTS)]
    cpu = load_shapes_world()[1].text_similarity(images, SINGLE_PROMPTS)
    cuda = load_shapes_world(device="cuda", dtype=dtype)[1].text_similarity(images, SINGLE_PROMPTS)
    # float32 differs by ~1e-4: cuDNN convolutions (the patch embedding) use TF32 by default
    np.testing.assert_allclose(cuda, cpu, atol=1e-3 if dtype == torch.float32 else 1e-2)
    assert (cuda.argmax(1) == cpu.argmax(1)).all()


def test_daam_on_cuda_matches_the_cpu():
    maps = {}
    for device in ("cpu", "cuda"):
        pipe, _ = load_shapes_world(device=device)
        maps[device] = DAAM(pipe).attribute("a red circle and a blue square",
                                            generator=torch.Generator().manual_seed(0),
                                            **DEFAULT_GENERATION.pipeline_kwargs())[0]
    assert maps["cuda"].device.type == "cpu" and maps["cuda"].shape == maps["cpu"].shape == (7, 64, 64)
    assert maps["cuda"].dtype == torch.float32
    scale = maps["cpu"].abs().amax()
    torch.testing.assert_close(maps["cuda"] / scale, maps["cpu"] / scale, atol=1e-3, rtol=0)


def test_clip_saliency_on_cuda_matches_the_cpu():
    _, clip = load_shapes_world()
    image = render("a green triangle and a yellow circle", 0).image
    words = ["green", "triangle", "yellow", "circle"]
    cpu = CLIPSaliency(clip.model, clip.processor, "integrated_gradients", baseline=0.5).attribute(image, words)
    _, clip_cuda = load_shapes_world(device="cuda")  # CLIPSaliency runs where its scorer is
    cuda = CLIPSaliency(clip_cuda.model, clip_cuda.processor, "integrated_gradients",
                        baseline=0.5).attribute(image, words)
    assert cuda.device.type == "cpu" and cuda.shape == cpu.shape == (4, 64, 64)
    torch.testing.assert_close(cuda, cpu, atol=1e-3 * float(cpu.abs().max()), rtol=1e-3)
