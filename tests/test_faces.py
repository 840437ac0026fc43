"""The two faces: ``mmzoo`` for users, ``mmzoo.plugin`` for plugin authors; the old names for one release."""

from __future__ import annotations

import warnings

import pytest

import mmzoo
import mmzoo.plugin
from mmzoo import contracts, errors, registry, testing
from tests.conftest import isolate_registries

USER_FACE = {
    "create_model",
    "from_pretrained",
    "list_models",
    "list_components",
    "list_pretrained",
    "evaluate",
    "open_split",
    "download",
    "convert_checkpoint",
    "MatchingModel",
    "Ensemble",
    "EmbeddingIndex",
    "SearchResult",
    "__version__",
}


def test_the_user_face_is_what_users_call():
    assert set(mmzoo.__all__) == USER_FACE
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of them is deprecated
        for name in mmzoo.__all__:
            assert getattr(mmzoo, name) is not None
    from mmzoo.evaluation import evaluate
    from mmzoo.factory import create_model

    assert mmzoo.create_model is create_model and mmzoo.evaluate is evaluate
    assert mmzoo.list_models("mmca*") == ["mmca", "mmca-no-cross"]


def test_the_plugin_face_holds_contracts_records_hooks_checkpoints_and_the_contract_suite(monkeypatch):
    isolate_registries(monkeypatch, "model")
    face = mmzoo.plugin
    assert face.Fragments is contracts.Fragments and face.FusionCache is contracts.FusionCache
    assert face.Recipe is registry.Recipe and face.MANUAL == registry.MANUAL
    assert face.check_fusion is testing.check_fusion
    assert face.get_registry("fusion").get("mmca-cross").__name__ == "CrossAttentionFusion"
    for name in face.__all__:
        assert getattr(face, name) is not None, name

    class Plugin:
        @face.hookimpl
        def mmzoo_register(self, registry):
            registry.model.register("face-test-vsepp", face.Recipe({"visual": {"name": "vsepp-fc"}}, "a recipe"))

    record = face.register_plugin(Plugin(), name="face-test")
    assert record.status == "loaded" and "face-test-vsepp" in mmzoo.list_models()
    assert any(r.name == "face-test" for r in face.plugin_records())


@pytest.mark.parametrize(
    ("old", "home"),
    [
        ("Fragments", "mmzoo.plugin"),
        ("hookimpl", "mmzoo.plugin"),
        ("ConfigError", "mmzoo.errors"),
        ("ModelConfig", "mmzoo.config"),
        ("PretrainedEntry", "mmzoo.plugin"),
        ("MMZooWarning", "mmzoo.errors"),
    ],
)
def test_old_names_work_for_one_release_with_a_deprecation_warning(old, home):
    with pytest.warns(DeprecationWarning, match=rf"mmzoo\.{old} is deprecated .* use {home}\.{old}"):
        value = getattr(mmzoo, old)
    import importlib

    assert value is getattr(importlib.import_module(home), old)


def test_every_error_is_reachable_through_the_old_face_and_mmzoo_errors():
    for name in ("MMZooError", "ConfigError", "StorageError", "UnknownComponentError"):
        with pytest.warns(DeprecationWarning):
            assert getattr(mmzoo, name) is getattr(errors, name)


@pytest.mark.parametrize("gone", ["ComponentSpec", "EnsembleFragments", "MatchingOutput", "apply_overrides"])
def test_names_used_nowhere_are_gone_from_the_face(gone):
    with pytest.raises(AttributeError, match=f"has no attribute '{gone}'"):
        getattr(mmzoo, gone)


def test_sub_packages_stay_reachable_as_attributes():
    from mmzoo.scoring import configure_threads

    assert mmzoo.scoring.configure_threads is configure_threads
    assert mmzoo.config.load_config_file.__module__ == "mmzoo.config"  # any module, listed or not
    with pytest.raises(AttributeError, match="has no attribute 'no_such_module'"):
        mmzoo.no_such_module  # noqa: B018
    assert "scoring" in dir(mmzoo) and "create_model" in dir(mmzoo)


def test_the_plugin_face_lists_exactly_what_it_exports():
    assert sorted(mmzoo.plugin.__all__) == sorted(mmzoo.plugin._EXPORTS)
