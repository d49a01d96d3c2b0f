"""Generator identity: the part of every cache key that says which model made an image.

The identity is derived from what the generator *is*, at the moment it is asked, not from its name:

- a diffusers pipeline: its class and every current component (``pipeline.components``): each model's class,
  config and a content hash of every parameter and buffer (plus the state of any peft LoRA layers), the
  scheduler's class and config, each tokenizer's vocabulary (with its BPE merges or Unigram scores), special tokens
  and length limit: the T5 encoder and tokenizer of SD3 / FLUX / PixArt and their transformer like any other;
- any other callable: walked recursively. Plain values (None, bool, int, float, str, bytes, dtypes, devices,
  tuples/lists/sets/dicts of them) by value; tensors, ``torch.nn.Module`` s and pipelines by content as above;
  functions by module, qualified name, bytecode, defaults, closure cells, and the scalars, tensors, modules and
  pipelines they read from their globals (other globals, such as functions they call, only through their names
  in the bytecode); bound methods by function and ``__self__``; ``functools.partial`` by function, args and
  keywords; classes by name; other objects (a class with ``__call__``, a user ``nn.Module``) by class and
  ``__dict__``, leaving out the names listed in their class attribute ``cache_identity_exclude`` (counters,
  logs: state that does not change the images).

Something the walk cannot identify across processes (an object of unknown kind such as a ``torch.Generator``
or a lock, or a lambda / local function, whose qualified name is not unique in its module) makes the identity
*per-instance*: good for the in-memory cache, refused for an on-disk cache without ``cache_key``. Weights that
are not materialised (meta tensors: sequential CPU offload, empty init) cannot be hashed: each such tensor gets a
token of its own, valid in this process only.

Content hashes are sha256 of every byte of a tensor (``hashlib``, run in a thread pool when there is much to
hash). Each tensor's hash is cached, keyed on the tensor object and its state ``(data_ptr, _version, shape,
stride, dtype, device, a 4-value sample)``, so it is recomputed only for a tensor that moved, was replaced or
edited in place (``torch`` bumps ``_version`` on every in-place op; edits made through ``tensor.data`` do not
bump it, and the sample catches those that touch the sampled values, e.g. a fused LoRA). After an edit through
``.data`` that may miss the sample (one row), call ``forget_fingerprints()``.
"""
from __future__ import annotations

import enum
import functools
import hashlib
import itertools
import json
import os
import types
import uuid
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

_PLAIN = (type(None), bool, int, float, complex, str, bytes, np.generic, torch.dtype, torch.device, enum.Enum)
_MODULE_INTERNALS = frozenset(vars(torch.nn.Module())) - {"training"}
_PARALLEL_BYTES = 64 << 20  # hash in a thread pool when this much needs hashing
_PROCESS, _META = uuid.uuid4().hex, itertools.count()

# ------------------------------------------------------------------------------------ cached content hashes

_CACHE: dict[int, tuple[weakref.ref, object, str]] = {}


def _cached(obj, state) -> str | None:
    """The value remembered for ``obj`` (the same live object) if its ``state`` is unchanged, else ``None``."""
    entry = _CACHE.get(id(obj))
    return entry[2] if entry is not None and entry[0]() is obj and entry[1] == state else None


def _remember(obj, state, value: str) -> str:
    key = id(obj)

    def drop(ref, key=key):
        if _CACHE.get(key, (None,))[0] is ref:
            del _CACHE[key]

    _CACHE[key] = (weakref.ref(obj, drop), state, value)
    return value


def forget_fingerprints() -> None:
    """Drop every cached tensor / tokenizer hash, so the next identity rehashes everything (use after editing
    weights through ``tensor.data``, which bypasses ``torch``'s version counter)."""
    _CACHE.clear()


def _tensor_state(tensor: torch.Tensor):
    """What must not move for a cached hash to stay valid: storage address, version counter, layout, and 4 values
    (edits through ``.data`` bypass the version counter)."""
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return ("no data", tuple(tensor.shape), tensor.dtype)
    if tensor.layout != torch.strided:  # sparse and other layouts (rare): rehashed every time
        return object()
    data, n = tensor.detach(), tensor.numel()
    if data.is_contiguous():  # a strided view of the storage: no copy, ~3 us
        sample = data.as_strided((min(4, n),), (max(1, n // 4),), data.storage_offset())
    else:
        sample = data.reshape(-1)[:: max(1, n // 4)][:4]
    version = object() if data.is_inference() else tensor._version  # inference tensors have no counter
    return (data.data_ptr(), version, tuple(tensor.shape), tensor.stride(), tensor.dtype, tensor.device,
            sample.tolist())


def hash_tensor(tensor: torch.Tensor) -> str:
    """sha256 of every byte of ``tensor`` (copied to the CPU first), as 32 hex digits."""
    if tensor.numel() == 0:
        return "empty"
    if tensor.device.type == "meta":  # not materialised (offloaded, empty init): one token per tensor object
        return f"meta:{_PROCESS}:{next(_META)}"
    data = tensor.detach()
    data = data.to_dense() if data.layout != torch.strided else data
    data = data.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.sha256(data).hexdigest()[:32]


def tensor_fingerprints(tensors: list[torch.Tensor]) -> list[str]:
    """A content hash of every value of each tensor (with its shape, dtype and device type), rehashing only tensors
    whose state moved since they were last hashed (in a thread pool when there is much to hash: ``hashlib``
    releases the GIL)."""
    states = [_tensor_state(tensor) for tensor in tensors]
    values = [_cached(tensor, state) for tensor, state in zip(tensors, states)]
    stale = [i for i, value in enumerate(values) if value is None]
    size = sum(tensors[i].numel() * tensors[i].element_size() for i in stale)
    if size > _PARALLEL_BYTES and (os.cpu_count() or 1) > 1:
        with ThreadPoolExecutor(min(8, os.cpu_count())) as pool:
            hashes = list(pool.map(hash_tensor, [tensors[i] for i in stale]))
    else:
        hashes = [hash_tensor(tensors[i]) for i in stale]
    for i, value in zip(stale, hashes):
        tensor = tensors[i]
        values[i] = _remember(tensor, states[i], f"{tuple(tensor.shape)}{tensor.dtype}{tensor.device.type}:{value}")
    return values


def tensor_fingerprint(tensor: torch.Tensor) -> str:
    """``tensor_fingerprints([tensor])[0]``."""
    return tensor_fingerprints([tensor])[0]


def _vocabulary_hash(tokenizer) -> str:
    """The vocabulary and, for a ``tokenizers``-backed tokenizer, its whole pipeline (normaliser, pre-tokenizer,
    BPE merges or Unigram piece scores, post-processor): the same vocabulary with other merges or scores splits
    words differently (a sentencepiece T5 tokenizer's pieces are chosen by their scores)."""
    state = (len(tokenizer),)
    value = _cached(tokenizer, state)
    if value is None:
        vocabulary = json.dumps(tokenizer.get_vocab(), sort_keys=True)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        pipeline = backend.to_str() if callable(getattr(backend, "to_str", None)) else ""
        value = _remember(tokenizer, state, hashlib.sha256(f"{vocabulary}\0{pipeline}".encode()).hexdigest()[:32])
    return value


@functools.lru_cache(maxsize=4096)
def _code_hash(code: types.CodeType) -> str:
    parts = [code.co_code.hex(), repr(code.co_names)]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_hash(const))
        else:  # a frozenset's repr follows the string hash seed: sort it
            parts.append(repr(sorted(map(repr, const))) if isinstance(const, frozenset) else repr(const))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=4096)
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    nested = (name for const in code.co_consts if isinstance(const, types.CodeType) for name in _global_names(const))
    return tuple(dict.fromkeys([*code.co_names, *nested]))


def library_config(obj) -> str | None:
    """The JSON config of a diffusers ``ConfigMixin`` (models, schedulers) or a transformers model, else ``None``.
    Private keys are left out: where it was loaded from, the library version, which values were defaults (a list
    whose order changes between processes)."""
    if not (hasattr(type(obj), "config_name") or hasattr(type(obj), "config_class")):
        return None
    config = getattr(obj, "config", None)
    if not isinstance(config, Mapping):
        config = config.to_dict() if hasattr(config, "to_dict") else None
    if config is None:
        return None
    return json.dumps({k: v for k, v in config.items() if not k.startswith("_")}, sort_keys=True, default=str)


def _is_pipeline(obj) -> bool:
    return hasattr(type(obj), "register_modules") and hasattr(type(obj), "components")  # a DiffusionPipeline


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _name(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


# --------------------------------------------------------------------------------------------------- the walk


class Identity:
    """What ``derive_identity`` found: ``digest`` (over everything), ``weights`` (over the tensor contents only)
    and ``unknown`` (why the identity holds in this process only; empty when it is stable across processes)."""

    def __init__(self, obj):
        self.unknown: list[str] = []
        self._parts: list = []  # str or torch.Tensor, hashed at the end (tensors in one batch)
        self._seen: dict[int, tuple[int, object]] = {}  # id -> (visit number, the object, kept alive)
        self._value(obj, "generator")
        tensors = [part for part in self._parts if isinstance(part, torch.Tensor)]
        fingerprints = tensor_fingerprints(tensors)
        by_tensor = iter(fingerprints)
        parts = [next(by_tensor) if isinstance(part, torch.Tensor) else part for part in self._parts]
        self.digest = _sha("\0".join(parts))
        self.weights = _sha("\0".join(sorted(fingerprints))) if fingerprints else ""

    def _add(self, *parts) -> None:
        self._parts.extend(str(part) for part in parts)

    def _value(self, obj, where: str) -> None:
        if isinstance(obj, _PLAIN):
            return self._add(type(obj).__name__, repr(obj))
        if id(obj) in self._seen:  # shared or cyclic: point at its first visit (walk order is deterministic)
            return self._add("seen", self._seen[id(obj)][0])
        if not isinstance(obj, tuple):
            self._seen[id(obj)] = (len(self._seen), obj)
        if isinstance(obj, torch.Tensor):
            self._parts.append(obj)
        elif isinstance(obj, np.ndarray):
            self._add("ndarray", obj.dtype, obj.shape, hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest())
        elif isinstance(obj, (tuple, list)):
            self._add(type(obj).__name__, len(obj))
            for i, item in enumerate(obj):
                self._value(item, f"{where}[{i}]")
        elif isinstance(obj, (set, frozenset)):
            self._value(sorted(obj, key=repr), where)
        elif isinstance(obj, dict):
            self._add("dict", len(obj))
            for key, item in obj.items():
                self._value(key, where)
                self._value(item, f"{where}[{key!r}]")
        elif isinstance(obj, functools.partial):
            self._add("partial")
            self._value((obj.func, obj.args, obj.keywords), where)
        elif isinstance(obj, types.MethodType):
            self._add("method")
            self._value((obj.__func__, obj.__self__), where)
        elif isinstance(obj, types.FunctionType):
            self._function(obj, where)
        elif isinstance(obj, (type, types.ModuleType, types.BuiltinFunctionType, types.BuiltinMethodType)):
            self._add(_name(obj) if not isinstance(obj, types.ModuleType) else obj.__name__)
        elif _is_pipeline(obj):
            self._add("pipeline", _name(type(obj)))
            for name, component in sorted(obj.components.items()):
                self._add(name)
                self._value(component, f"{where}.{name}")
        elif hasattr(obj, "get_vocab") and hasattr(obj, "model_max_length"):  # a tokenizer
            special = json.dumps(obj.special_tokens_map, sort_keys=True, default=str)
            self._add("tokenizer", _name(type(obj)), _vocabulary_hash(obj), obj.model_max_length,
                      getattr(obj, "padding_side", None), special)
        elif (config := library_config(obj)) is not None:  # a diffusers / transformers model or a scheduler
            self._add("library", _name(type(obj)), config)
            if isinstance(obj, torch.nn.Module):
                self._module_tensors(obj)
        elif isinstance(obj, torch.nn.Module):
            self._add("module", _name(type(obj)))
            self._tensors(obj, "")
            self._attributes(obj, where, exclude=_MODULE_INTERNALS)
            for name, child in obj._modules.items():
                self._add(name)
                self._value(child, f"{where}.{name}")
        elif hasattr(obj, "to_json_string"):  # transformers configs, processors, feature extractors
            self._add(_name(type(obj)), obj.to_json_string())
        elif isinstance(getattr(obj, "__dict__", None), dict):
            self._add("object", _name(type(obj)))
            self._attributes(obj, where, exclude=())
        else:
            self._opaque(obj, where, f"{where} is a {_name(type(obj))}, which has no derivable identity")

    def _opaque(self, obj, where: str, why: str) -> None:
        self.unknown.append(why)
        self._add("opaque", _name(type(obj)), id(obj))

    def _attributes(self, obj, where: str, exclude) -> None:
        exclude = set(exclude) | set(getattr(type(obj), "cache_identity_exclude", ()))
        attributes = {name: value for name, value in vars(obj).items() if name not in exclude}
        self._add("attributes", len(attributes))
        for name, value in attributes.items():
            self._add(name)
            self._value(value, f"{where}.{name}")

    def _function(self, function: types.FunctionType, where: str) -> None:
        name = _name(function)
        self._add("function", name, _code_hash(function.__code__))
        if "<" in function.__qualname__:  # <lambda>, <locals>
            self.unknown.append(f"{where} is {name}, a lambda or local function")
        try:
            cells = tuple(cell.cell_contents for cell in function.__closure__ or ())
        except ValueError:  # an empty cell (a variable not yet assigned)
            return self._opaque(function, where, f"{where} ({name}) has an unassigned closure variable")
        self._value((function.__defaults__, function.__kwdefaults__, cells), f"{where} ({name})")
        for global_name in _global_names(function.__code__):
            value = function.__globals__.get(global_name)
            if isinstance(value, (*_PLAIN, torch.Tensor, torch.nn.Module)) or _is_pipeline(value):
                self._add(global_name)
                self._value(value, f"{where} ({name}) global {global_name}")

    def _tensors(self, module: torch.nn.Module, prefix: str) -> None:
        for name, tensor in (*module._parameters.items(), *module._buffers.items()):
            if tensor is not None:
                self._add(prefix + name)
                self._parts.append(tensor)

    def _module_tensors(self, module: torch.nn.Module) -> None:
        """Every parameter and buffer of the module tree by name, and the state of peft LoRA layers."""
        for prefix, submodule in module.named_modules():
            self._tensors(submodule, f"{prefix}.")
            state = vars(submodule)
            if "scaling" in state:  # a peft tuner layer: adapter scales, which are merged, which are active
                self._add(repr(state["scaling"]), state.get("merged_adapters"), state.get("_active_adapter"),
                          state.get("_disable_adapters"))


def derive_identity(obj) -> Identity:
    """Walk ``obj`` (a pipeline or any callable) and hash what it is now; see the module docstring."""
    return Identity(obj)


def pipeline_identity(pipeline) -> str:
    """``"<PipelineClass>:<hash>"`` of the pipeline's current components (recomputed cheaply each call)."""
    return f"{type(pipeline).__name__}:{derive_identity(pipeline).digest}"


def callable_identity(function, cache_key: str | None = None, persistent: bool = False) -> str:
    """The identity of a callable generator.

    With ``cache_key``: ``cache_key`` stands for everything but the weights, so the identity is the key plus a
    hash of the contents of every tensor the callable holds (editing them still changes the identity). Without:
    the full derived identity; if part of it holds in this process only, ``persistent`` (an on-disk cache) raises
    ``ValueError`` asking for ``cache_key``.
    """
    identity = derive_identity(function)
    if cache_key is not None:
        return f"callable:{cache_key}" + (f":{identity.weights}" if identity.weights else "")
    if identity.unknown and persistent:
        raise ValueError(
            f"the generator has no identity that survives this process, so it cannot key an on-disk cache: "
            f"{'; '.join(dict.fromkeys(identity.unknown))}. Pass cache_key='<a name that changes whenever the "
            "generator changes>' (its weights are still fingerprinted)"
        )
    if identity.unknown:  # per instance: two such generators never share images, even in one process
        return f"local:{_name(function)}@{id(function):x}:{identity.digest}"
    return f"callable:{_name(function)}:{identity.digest}"
