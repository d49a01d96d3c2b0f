"""Generator identity: the part of every cache key that says which model made an image."""
from __future__ import annotations

import functools
import hashlib
import itertools
import json

import torch


def _update_with_module(digest, module: torch.nn.Module) -> None:
    """Hash a module's parameter/buffer names, shapes, dtypes and 64 evenly spaced values of each tensor."""
    for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        if tensor.device.type == "meta" or tensor.numel() == 0:
            continue
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64]
        digest.update(sample.float().cpu().numpy().tobytes())


def _component_identity(digest, name: str, component) -> None:
    digest.update(f"{name}:{type(component).__module__}.{type(component).__qualname__}".encode())
    config = getattr(component, "config", None)
    if isinstance(config, dict):  # diffusers FrozenDict (models, schedulers)
        digest.update(json.dumps(dict(config), sort_keys=True, default=str).encode())
    elif hasattr(config, "to_json_string"):  # transformers PretrainedConfig
        digest.update(config.to_json_string(use_diff=False).encode())
    if isinstance(component, torch.nn.Module):
        _update_with_module(digest, component)
    elif hasattr(component, "get_vocab"):  # a tokenizer
        digest.update(json.dumps(component.get_vocab(), sort_keys=True).encode())
        digest.update(str(getattr(component, "model_max_length", None)).encode())


def pipeline_identity(pipeline) -> str:
    digest = hashlib.sha256()
    digest.update(f"{type(pipeline).__qualname__}|{getattr(pipeline, 'name_or_path', '')}".encode())
    for name, component in sorted(pipeline.components.items()):
        _component_identity(digest, name, component)
    return f"{type(pipeline).__name__}:{digest.hexdigest()[:32]}"


def callable_identity(function, cache_key: str | None, persistent: bool) -> str:
    owner = function if not isinstance(function, functools.partial) else function.func
    name = f"{getattr(owner, '__module__', '?')}.{getattr(owner, '__qualname__', type(owner).__qualname__)}"
    if cache_key is not None:
        return f"callable:{cache_key}"
    if persistent and "<" in name:
        raise ValueError(
            f"the generator {name!r} is a lambda or local function, so it has no stable identity for the on-disk "
            "cache: pass cache_key='<a name that changes whenever the generator changes>'"
        )
    digest = hashlib.sha256(name.encode())
    if isinstance(function, torch.nn.Module):
        _update_with_module(digest, function)
    return f"{name}:{digest.hexdigest()[:16]}"
