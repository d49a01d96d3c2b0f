"""What a run's explanations cost, in full-image equivalents: the manifest's ``cost`` section.

The one expensive thing a run spends is generations. A method that counts its images (``shap-multifidelity``:
``runs.methods.SeedEstimate.cost``) records per prompt the full images (the run's settings) and the proxy images
(cheaper settings) it used; a proxy image counts as ``proxy_cost`` full images, where ``proxy_cost`` is

- *measured* when this run generated images at both settings: seconds per proxy image over seconds per full image,
  from the planned batches' generation times (``runs.fill``: ``by_settings``, summed over processes and launches);
- else the *estimate* the method spent its budget with (``--proxy-cost``, or the steps ratio times the pixels
  ratio), labelled so.

The manifest's ``cost``::

    {"timings": {"run": {"images": 64, "seconds": 9.1}, '{"num_inference_steps": 2}': {...}},
     "proxy_cost": {'{"num_inference_steps": 2}': {"ratio": 0.27, "source": "measured: ..."}},
     "prompts": {"0": {"shap-multifidelity": {"full_images": 34, "proxy_images": 63, "proxy_cost": 0.27,
                                              "full_image_equivalents": 51.0, "exact_images": 128,
                                              "fraction_of_exact": 0.40, "stopped": [...], ...}}},
     "total": {"shap-multifidelity": {"full_images": ..., "proxy_images": ..., "full_image_equivalents": ...,
                                      "exact_images": ..., "fraction_of_exact": ...}}}

``exact_images`` is what exact SHAP would have cost: ``2**d`` per seed. A resumed run keeps the prompts it read
back with their cost, and spends nothing on them.
"""
from __future__ import annotations

import json

#: The per-prompt entries summed into ``total``.
COUNTED = ("full_images", "proxy_images", "full_image_equivalents", "exact_images")


def add_timings(cost: dict, fill_counters) -> None:
    """Add one wave's generation times (each process's ``fill_cache`` counters, ``by_settings``) to ``cost``'s
    ``timings``: ``{settings key: {"images": n, "seconds": s}}``."""
    timings = cost.setdefault("timings", {})
    for counters in fill_counters:
        for key, made in counters.get("by_settings", {}).items():
            total = timings.setdefault(key, {"images": 0, "seconds": 0.0})
            total["images"] += made["images"]
            total["seconds"] = round(total["seconds"] + made["seconds"], 3)


def proxy_ratio(timings: dict, key: str, planned: float, planned_source: str) -> tuple[float, str]:
    """A proxy image's cost relative to a full image's for the proxy settings ``key``.

    Parameters
    ----------
    timings : dict
        ``cost["timings"]`` (see :func:`add_timings`).
    key : str
        The proxy's settings, as ``runs.fill.settings_key`` names them.
    planned, planned_source : float, str
        The ratio the method spent its budget with, and where it came from.

    Returns
    -------
    ratio : float
        Measured when both settings have generated images with time spent, else ``planned``.
    source : str
        ``"measured: ..."`` (seconds per image of each) or ``"estimate (nothing generated at both settings in this
        run): ..."``.
    """
    full, proxy = timings.get("run"), timings.get(key)
    if full and proxy and full["images"] and proxy["images"] and full["seconds"] > 0 and proxy["seconds"] > 0:
        per_full, per_proxy = full["seconds"] / full["images"], proxy["seconds"] / proxy["images"]
        return per_proxy / per_full, (f"measured: {per_proxy:.4g} s per proxy image ({proxy['images']} images) / "
                                      f"{per_full:.4g} s per full image ({full['images']} images), this run's "
                                      "planned generations")
    return planned, f"estimate (nothing generated at both settings in this run): {planned_source}"


def summarise(manifest: dict) -> dict:
    """Recompute ``manifest["cost"]``'s ``proxy_cost``, ``prompts`` and ``total`` from the prompts' recorded costs
    (``manifest["prompts"][n]["cost"]``) and the timings; returns the ``cost`` section (also set in place)."""
    cost = manifest.setdefault("cost", {})
    timings = cost.setdefault("timings", {})
    ratios, prompts, total = {}, {}, {}
    for number, entry in enumerate(manifest.get("prompts", [])):
        for method, used in (entry.get("cost") or {}).items():
            key = "run" if used.get("proxy_settings") is None else json.dumps(used["proxy_settings"], sort_keys=True)
            if key != "run" and key not in ratios:
                ratio, source = proxy_ratio(timings, key, used["planned_proxy_cost"], used["proxy_cost_source"])
                ratios[key] = {"ratio": ratio, "source": source}
            ratio = ratios[key]["ratio"] if key != "run" else 0.0
            spent = used["full_images"] + ratio * used["proxy_images"]
            row = used | {"proxy_cost": ratio, "full_image_equivalents": spent,
                          "fraction_of_exact": spent / used["exact_images"]}
            prompts.setdefault(str(number), {})[method] = row
            summed = total.setdefault(method, dict.fromkeys(COUNTED, 0))
            for name in COUNTED:
                summed[name] += row[name]
    for summed in total.values():
        summed["fraction_of_exact"] = summed["full_image_equivalents"] / summed["exact_images"]
    cost.update(proxy_cost=ratios, prompts=prompts, total=total)
    return cost
