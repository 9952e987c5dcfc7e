"""Config schema: defaults, one-line errors for every bad-input path, --set overrides."""
from __future__ import annotations

from pathlib import Path

import pytest

from pnp_imaging.config import DEFAULTS, ConfigError, apply_overrides, load_config, resolve_config

DATA = Path(__file__).resolve().parent.parent / "data"
IMAGE = str(DATA / "cameraman.png")


def test_defaults_are_filled_and_paths_absolute():
    cfg = resolve_config({"image": "cameraman.png"}, base_dir=DATA)
    assert cfg.image == str(DATA / "cameraman.png")
    assert cfg.sampler.n_steps == DEFAULTS["sampler"]["n_steps"]
    assert cfg.prior.eps == pytest.approx((5 / 255) ** 2)
    # operator/noise sections are free-form (validated by operators.registry)
    cfg = resolve_config({"image": IMAGE, "operator": {"type": "inpainting", "mask": "random", "missing_ratio": 0.5}})
    assert cfg.operator == {"type": "inpainting", "mask": "random", "missing_ratio": 0.5}


@pytest.mark.parametrize(
    "config, key, fragment",
    [
        ({"image": IMAGE, "sampler": {"n_stepz": 3}}, "sampler.n_stepz", "did you mean 'n_steps'"),
        ({"image": IMAGE, "samplr": {}}, "samplr", "did you mean 'sampler'"),
        ({"image": IMAGE, "sampler": {"n_steps": 10.5}}, "sampler.n_steps", "must be an integer"),
        ({"image": IMAGE, "sampler": {"n_steps": True}}, "sampler.n_steps", "must be an integer"),
        ({"image": IMAGE, "sampler": {"n_steps": 10, "n_burnin": 10}}, "sampler.n_burnin", "must be < sampler.n_steps"),
        ({"image": IMAGE, "sampler": {"n_steps": 10, "n_burnin": 5, "thin": 4}}, "sampler.thin", "fewer than 2"),
        ({"image": IMAGE, "sampler": {"type": "hmc"}}, "sampler.type", "unknown sampler 'hmc'; valid: diffpir, dps, "),
        ({"image": IMAGE, "sampler": {"step_size": -1}}, "sampler.step_size", "positive"),
        ({"image": IMAGE, "sampler": {"box": [2, 1]}}, "sampler.box", "low < high"),
        ({"image": IMAGE, "prior": {"eps": 0}}, "prior.eps", "positive"),
        ({"image": IMAGE, "prior": {"alpha": "big"}}, "prior.alpha", "positive"),
        ({"image": IMAGE, "estimates": {"credible_level": 1.5}}, "estimates.credible_level", "(0, 1)"),
        ({"image": IMAGE, "dtype": "float16"}, "dtype", "float32"),
        ({"image": "does/not/exist.png"}, "image", "file not found"),
        ({}, "image", "missing"),
        ({"image": IMAGE, "operator": "blur"}, "operator", "mapping"),
        ({"image": IMAGE, "map": {"type": "admm"}}, "map.type", "pnp-sgd"),
        ({"image": IMAGE, "map": {"splitting": "admm"}}, "map.splitting", "'proximal'"),
        ({"image": IMAGE, "map": {"step_fraction": 3}}, "map.step_fraction", "(0, 2]"),
        ({"image": IMAGE, "sampler": {"max_nll_rise": 0}}, "sampler.max_nll_rise", "positive"),
        # every section is validated at resolve time, including those read only after sampling
        ({"image": IMAGE, "mismatch": {"denoiser": "drunet_grey"}}, "mismatch.denoiser", "unknown denoiser"),
        ({"image": IMAGE, "mismatch": {"operator": {"type": "blurr"}}}, "mismatch.operator.type", "not valid"),
        ({"image": IMAGE, "mismatch": {"n_statez": 3}}, "mismatch.n_statez", "did you mean 'n_states'"),
        ({"image": IMAGE, "prior": {"denoiser": "drunet_grey"}}, "prior.denoiser", "unknown denoiser"),
        ({"image": IMAGE, "operator": {"type": "blur", "kernel": "uniform"}}, "operator.size", "missing"),
        ({"image": IMAGE, "operator": {"type": "blur", "kernel": "uniform", "size": 9, "sizes": 3}}, "operator", "unknown keys"),
        ({"image": IMAGE, "noise": {"type": "gaussian"}}, "noise.sigma", "missing"),
        ({"image": IMAGE, "noise": {"type": "gauss", "sigma": 0.1}}, "noise.type", "not valid"),
        ({"image": IMAGE, "sampler": {"type": "pnp-ula", "stages": 10}}, "sampler.stages", "unknown key"),
        ({"image": IMAGE, "sampler": {"type": "skrock", "stages": 1}}, "sampler.stages", ">= 2"),
        ({"image": IMAGE, "sampler": {"stages": 12}}, "sampler.stages", "option of skrock (set sampler.type: skrock)"),
        ({"image": IMAGE, "sampler": {"step_fraction": 1.5}}, "sampler.step_fraction", "(0, 1]"),
        ({"image": IMAGE, "sampler": {"init": "zero"}}, "sampler.init", "'map'"),
        ({"image": IMAGE, "sampler": {"init": "pnp-sgd", "init_steps": 0}}, "sampler.init_steps", ">= 1"),
        ({"image": IMAGE, "map": {"enabled": "yes"}}, "map.enabled", "true or false"),
        ({"image": IMAGE, "checkpoint_every": 0}, "checkpoint_every", ">= 1"),
    ],
)
def test_bad_config_one_line_error_naming_key(config, key, fragment):
    with pytest.raises(ConfigError) as info:
        resolve_config(config)
    message = str(info.value)
    assert message.startswith(f"{key}:"), message
    assert fragment in message
    assert "\n" not in message


def test_overrides_parse_yaml_values_and_create_sections():
    raw = {"image": IMAGE, "sampler": {"n_steps": 100}}
    out = apply_overrides(raw, ["sampler.n_steps=500", "sampler.box=[0, 1]", "prior.eps=0.001", "map.enabled=false"])
    assert out["sampler"]["n_steps"] == 500 and out["sampler"]["box"] == [0, 1]
    assert out["prior"]["eps"] == 0.001 and out["map"]["enabled"] is False
    assert raw["sampler"]["n_steps"] == 100  # input untouched
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_overrides(raw, ["sampler.n_steps"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(raw, ["image.x=1"])


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)
    good = tmp_path / "good.yaml"
    (tmp_path / "img.png").write_bytes((DATA / "cameraman.png").read_bytes())
    good.write_text("image: img.png\nsampler: {n_steps: 50, n_burnin: 10}\n")
    cfg = resolve_config(good)
    assert cfg.image == str((tmp_path / "img.png").resolve())


def test_operator_file_paths_resolved_against_config_folder():
    cfg = resolve_config({"image": "cameraman.png", "operator": {"type": "blur", "kernel": "kernels/motion_9.npy"}},
                         base_dir=DATA)
    assert cfg.operator["kernel"] == str(DATA / "kernels" / "motion_9.npy")
    with pytest.raises(ConfigError, match=r"^operator.kernel: file not found"):
        resolve_config({"image": IMAGE, "operator": {"type": "blur", "kernel": "nope.npy"}})


def test_network_device_rules():
    """``device``: operators stay on the CPU; ``auto`` puts the network on a GPU only if torch
    sees one; asking for ``cuda`` without one is a one-line error naming the key."""
    import torch

    from pnp_imaging.api import network_device as _network_device

    assert _network_device("cpu") == torch.device("cpu")
    assert _network_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^device: 'cuda' asked for but torch sees no CUDA GPU"):
            _network_device("cuda")


def test_resolved_config_is_typed_frozen_and_round_trips():
    """One frozen dataclass per section; the sampler's own options are its family's dataclass;
    ``to_dict()`` resolves back to an equal config."""
    import dataclasses

    from pnp_imaging.samplers.skrock import SKROCKOptions

    cfg = resolve_config({"image": IMAGE, "sampler": {"type": "skrock", "stages": 12, "box": [0, 1]}})
    assert isinstance(cfg.sampler.options, SKROCKOptions)
    assert cfg.sampler.options.stages == 12 and cfg.sampler.options.box == (0.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sampler.n_steps = 3
    assert resolve_config(cfg.to_dict()) == cfg
    ula = resolve_config({"image": IMAGE, "sampler": {"type": "pnp-ula"}})
    assert "stages" not in ula.to_dict()["sampler"]


@pytest.mark.parametrize("operator, noise, expected", [
    (None, None, "pnp-kinetic-exp"),  # the defaults: circular blur, Gaussian noise
    ({"type": "inpainting", "mask": "random", "missing_ratio": 0.5}, None, "pnp-kinetic-exp"),
    ({"type": "blur", "kernel": "uniform", "size": 5, "boundary": "reflect"}, None, "skrock"),
    (None, {"type": "poisson", "gain": 0.01}, "skrock"),
    ([{"type": "blur", "kernel": "uniform", "size": 5}, {"type": "inpainting", "mask": "random", "missing_ratio": 0.5}],
     None, "skrock"),
])
def test_auto_sampler_is_likelihood_exact_where_the_data_term_allows(operator, noise, expected):
    cfg = {"image": IMAGE, **({"operator": operator} if operator else {}), **({"noise": noise} if noise else {})}
    assert resolve_config(cfg).sampler.type == expected
    assert resolve_config({**cfg, "sampler": {"type": "auto", "n_steps": 500}}).sampler.type == expected
    assert resolve_config({**cfg, "sampler": {"type": "pnp-ula"}}).sampler.type == "pnp-ula"


def test_fast_budget_applies_family_options_only_to_their_family():
    from pnp_imaging.config import with_fast_budget

    sk = with_fast_budget({"image": IMAGE, "sampler": {"type": "skrock", "stages": 10}})
    assert sk["sampler"]["stages"] == 3 and sk["sampler"]["n_steps"] == 6
    auto = with_fast_budget({"image": IMAGE})
    assert "stages" not in auto["sampler"] and "family_options" not in auto
    resolve_config(auto)
