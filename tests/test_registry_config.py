"""The registry, configs and overrides: names, errors, listing."""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo import registry
from mmzoo.config import ModelConfig, apply_overrides, load_config_file
from mmzoo.registry import natural_key


class TinyFusion(mmzoo.plugin.FusionBlock):
    """A fusion block registered by user code in tests."""

    class Config(mmzoo.plugin.ComponentConfig):
        scale: float = 1.0

    def forward(self, images, texts):
        return self.config.scale * images.pooled @ texts.pooled.t()


@pytest.fixture
def user_fusion():
    registry.fusion.register("tiny-test-fusion", TinyFusion)
    yield "tiny-test-fusion"
    registry.fusion.unregister("tiny-test-fusion")


def test_builtin_components_are_registered():
    assert {"mmca", "mmca-no-cross", "vsepp"} <= set(mmzoo.list_models())
    assert "mmca-cross" in mmzoo.list_components("fusion")
    assert "word-region-max" in mmzoo.list_components("fusion"), "the example plugin is installed by the README"
    assert mmzoo.list_models("mmca*") == ["mmca", "mmca-no-cross"]
    assert mmzoo.list_models("MMCA-NO*") == ["mmca-no-cross"]
    assert registry.fusion.entry("mmca-cross").plugin == "mmca"


def test_natural_sort():
    assert sorted(["m10", "m2", "M1"], key=natural_key) == ["M1", "m2", "m10"]


def test_register_twice_is_an_error_unless_override(user_fusion):
    with pytest.raises(mmzoo.errors.PluginError, match="already registered"):
        registry.fusion.register(user_fusion, TinyFusion)
    registry.fusion.register(user_fusion, TinyFusion, override=True)
    assert registry.fusion.entry(user_fusion).plugin is None


def test_register_rejects_wrong_kind_and_bad_names():
    with pytest.raises(mmzoo.errors.PluginError, match=r"subclass of mmzoo\.FusionBlock"):
        registry.fusion.register("not-a-fusion", torch.nn.Linear)
    with pytest.raises(mmzoo.errors.PluginError, match="Invalid fusion name"):
        registry.fusion.register("bad name!", TinyFusion)
    with pytest.raises(mmzoo.errors.PluginError, match="Recipe"):
        registry.model.register("bad-recipe", 42)


def test_decorator_registration(user_fusion):
    @registry.loss.register("tiny-test-loss")
    class TinyLoss(mmzoo.plugin.Loss):
        def forward(self, scores):
            return scores.sum()

    try:
        assert registry.loss.get("tiny-test-loss") is TinyLoss
    finally:
        registry.loss.unregister("tiny-test-loss")


def test_unknown_name_lists_close_matches_and_plugins():
    with pytest.raises(mmzoo.errors.UnknownComponentError) as info:
        registry.fusion.get("mmca-crosss")
    message = str(info.value)
    assert "mmca-cross" in message and "Did you mean" in message and "Installed plugins" in message
    with pytest.raises(mmzoo.errors.UnknownComponentError, match="No model named"):
        mmzoo.create_model("mcma")
    with pytest.raises(mmzoo.errors.UnknownComponentError, match="kinds are"):
        mmzoo.list_components("fusions")


def test_user_component_builds_into_a_model(user_fusion):
    model = mmzoo.create_model(
        "mmca",
        **{
            "visual.in_dim": 8,
            "text.name": "gru",
            "embed_dim": 16,
            "visual.heads": 2,
            "fusion.name": user_fusion,
            "fusion.scale": 2.0,
        },
    )
    assert isinstance(model.fusion, TinyFusion) and model.fusion.config.scale == 2.0


def test_config_is_completed_with_defaults_and_round_trips():
    config = ModelConfig.parse(registry.model.get("mmca").config)
    data = config.to_dict()
    assert data["fusion"]["heads"] == 16 and data["fusion"]["name"] == "mmca-cross"
    assert data["text"]["max_tokens"] == 32 and data["visual"]["in_dim"] == 2048
    assert ModelConfig.parse(data).to_dict() == data


def test_unknown_config_field_is_a_config_error():
    with pytest.raises(mmzoo.errors.ConfigError, match=r"fusion\.headz: unknown field"):
        mmzoo.create_model("mmca", **{"fusion.headz": 3})
    with pytest.raises(mmzoo.errors.ConfigError, match="alpah"):
        ModelConfig.parse({**registry.model.get("vsepp").config, "alpah": 1})
    with pytest.raises(mmzoo.errors.ConfigError, match=r"visual\.in_dim"):
        mmzoo.create_model("vsepp", **{"visual.in_dim": "lots"})
    with pytest.raises(mmzoo.errors.ConfigError, match="must divide"):
        mmzoo.create_model(
            "mmca", **{"text.name": "gru", "fusion.heads": 5, "visual.in_dim": 8, "embed_dim": 16, "visual.heads": 2}
        )


def test_overrides():
    base = {"visual": {"name": "a", "x": 1}, "fusion": {"name": "f", "heads": 16}, "alpha": 1.0}
    out = apply_overrides(base, {"fusion.heads": 8, "alpha": 0.5, "visual.name": "b", "visual.y": 2})
    assert out == {"visual": {"name": "b", "y": 2}, "fusion": {"name": "f", "heads": 8}, "alpha": 0.5}
    assert base["fusion"]["heads"] == 16, "overrides never change their input"
    assert apply_overrides(base, {"visual.name": "a"})["visual"] == {"name": "a", "x": 1}
    with pytest.raises(mmzoo.errors.ConfigError, match="not a section"):
        apply_overrides(base, {"fuson.heads": 8})
    with pytest.raises(mmzoo.errors.ConfigError, match="empty"):
        apply_overrides({**base, "fusion": None}, {"fusion.heads": 8})


def test_config_files(tmp_path):
    (tmp_path / "a.yaml").write_text("alpha: 0.5\nfusion:\n  heads: 8\n")
    assert load_config_file(tmp_path / "a.yaml") == {"alpha": 0.5, "fusion": {"heads": 8}}
    (tmp_path / "b.json").write_text('{"alpha": 0.5}')
    assert load_config_file(tmp_path / "b.json") == {"alpha": 0.5}
    (tmp_path / "c.json").write_text("{oops")
    with pytest.raises(mmzoo.errors.ConfigError, match=r"c\.json"):
        load_config_file(tmp_path / "c.json")
    (tmp_path / "d.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(mmzoo.errors.ConfigError, match="mapping"):
        load_config_file(tmp_path / "d.yaml")
    with pytest.raises(mmzoo.errors.ConfigError, match="Cannot read"):
        load_config_file(tmp_path / "missing.yaml")
