"""Every matrix config shipped in bench/configs parses, expands and names weights that ship."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from bench.matrix.config import expand, load_config
from bench.matrix.run import checkpoint_path
from core.zoo import CONFIG_SIDECAR, config_for

SHIPPED = sorted(Path(str(resources.files("bench") / "configs")).glob("*.toml"))


def test_the_default_and_the_a0_configs_ship():
    assert {"default", "a0", "a0-172"} <= {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_config_expands_and_its_demo_weights_fit_its_models(path):
    config = load_config(path)
    assert config.name == path.stem
    cells = expand(config)
    assert cells and len({c.cell_id for c in cells}) == len(cells)
    for entry in config.models:
        if not entry.checkpoint.startswith("demo:"):
            continue
        weights = Path(checkpoint_path(entry.checkpoint))
        assert (weights / CONFIG_SIDECAR).exists()
        # The sidecar's architecture is the entry's: a wrong pairing is refused here, not
        # after an hour of exports.
        model = config_for(entry.model, entry.variant, entry.resolution, entry.classes, weights)
        assert (model.model_id, model.variant) == (entry.model, entry.variant)
