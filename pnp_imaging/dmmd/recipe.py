"""DMMD training recipes (YAML): loading, defaults and one-line errors naming the bad key.

A recipe has ``name``, ``data`` (``source: digits``, ``split``, ``seed``), ``arch`` (``FeatureNet``
keywords except ``dim``), ``objective`` (``levels``, ``batch``, ``t_min``, ``gp_weight``),
``optim`` (``lr``, ``lr_min``), ``steps``, ``seed``, ``threads``, ``max_wall_minutes``,
``checkpoint_every``, ``log_every`` and ``flow`` (the sampler's defaults shipped with the weights:
``levels``, ``steps_per_level``, ``step_size``, ``t_min``, ``batch``). See
``pnp_imaging/dmmd/recipes/dmmd_digits.yaml``.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["load_recipe", "check_recipe", "RECIPES_DIR"]

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
REQUIRED = ("name", "data", "arch", "objective", "optim", "steps", "seed", "flow")
OBJECTIVE_KEYS = ("levels", "batch", "t_min", "gp_weight")
FLOW_KEYS = ("levels", "steps_per_level", "step_size", "t_min", "batch")


def load_recipe(path: str | os.PathLike) -> dict:
    """Read and check a recipe; records its path under ``_recipe_path``."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"recipe: {p} not found; pass a file such as {RECIPES_DIR / 'dmmd_digits.yaml'}")
    recipe = yaml.safe_load(p.read_text()) or {}
    recipe["_recipe_path"] = str(p)
    return check_recipe(recipe)


def check_recipe(recipe: dict) -> dict:
    """Fill defaults and reject a recipe with missing or out-of-range keys (ValueError naming the key)."""
    missing = [k for k in REQUIRED if k not in recipe]
    missing += [f"objective.{k}" for k in OBJECTIVE_KEYS if k not in recipe.get("objective", {})]
    missing += [f"flow.{k}" for k in FLOW_KEYS if k not in recipe.get("flow", {})]
    if missing:
        raise ValueError(f"recipe: missing key(s) {missing}; see {RECIPES_DIR / 'dmmd_digits.yaml'}")
    obj, flow = recipe["objective"], recipe["flow"]
    if not (0 < float(obj["t_min"]) < 1 and 0 < float(flow["t_min"]) < 1):
        raise ValueError("recipe: objective.t_min and flow.t_min must lie in (0, 1)")
    if int(obj["batch"]) < 2 or int(obj["levels"]) < 1 or int(recipe["steps"]) < 1:
        raise ValueError("recipe: objective.batch must be >= 2, objective.levels and steps >= 1")
    if float(obj["gp_weight"]) < 0 or float(flow["step_size"]) <= 0:
        raise ValueError("recipe: objective.gp_weight must be >= 0 and flow.step_size > 0")
    for key, default in (("threads", 1), ("max_wall_minutes", None), ("checkpoint_every", 250), ("log_every", 100)):
        recipe.setdefault(key, default)
    recipe["optim"].setdefault("lr_min", recipe["optim"]["lr"])
    return recipe
