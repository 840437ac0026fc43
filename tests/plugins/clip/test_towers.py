"""The towers as mmzoo models: saving and loading, search (API and CLI), random towers, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import mmzoo
from mmzoo import registry
from mmzoo.cli import main
from mmzoo.errors import ConfigError
from tests.hub_server import fake_hub, go_offline  # noqa: F401  (fake_hub is a fixture)
from tests.plugins.clip.checkpoints import CAPTIONS, hub_files, images, write_clip, write_siglip


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip"))


def from_folder(folder, **overrides):
    return mmzoo.create_model(
        "clip", **{"visual.source": str(folder), "text.source": str(folder), "embed_dim": 32, **overrides}
    )


def test_a_saved_model_reloads_with_its_processor_and_tokenizer_and_the_same_scores(tmp_path, clip_folder):
    model = from_folder(clip_folder).eval()
    with torch.no_grad():
        before = model.similarity(model.encode_images(images()), model.encode_texts(CAPTIONS))
    saved = model.save_pretrained(tmp_path / "saved")
    assert {"config.json", "preprocessor_config.json"} <= {p.name for p in (saved / "visual").iterdir()}
    assert {"config.json", "tokenizer_config.json"} <= {p.name for p in (saved / "text").iterdir()}
    assert "text.logit_scale" in load_file(str(saved / "model.safetensors"))
    again = mmzoo.from_pretrained(f"local-dir:{saved}")
    with torch.no_grad():
        after = again.similarity(again.encode_images(images()), again.encode_texts(CAPTIONS))
    torch.testing.assert_close(after, before)
    torch.testing.assert_close(again.text.logit_scale, model.text.logit_scale)


@pytest.mark.parametrize("model_type", ["clip", "siglip", "siglip2"])
def test_random_towers_build_from_a_config_with_a_tokenizer_made_from_nothing(tmp_path, model_type):
    from mmzoo_plugins.clip.towers import tiny_architecture

    arch = tiny_architecture(model_type)
    model = mmzoo.create_model(
        {
            "visual": {"name": "clip-vision", "architecture": arch},
            "text": {"name": "clip-text", "architecture": arch},
            "loss": {"name": "triplet"},
            "embed_dim": 32,
        }
    ).eval()
    with torch.no_grad():
        scores = model.similarity(model.encode_images(images()), model.encode_texts(CAPTIONS))
    assert scores.shape == (3, 3)
    again = mmzoo.from_pretrained(f"local-dir:{model.save_pretrained(tmp_path / 'random')}")
    with torch.no_grad():
        torch.testing.assert_close(
            again.similarity(again.encode_images(images()), again.encode_texts(CAPTIONS)), scores
        )


def test_search_api_and_cli_on_the_official_alias(tmp_path, fake_hub, monkeypatch, capsys):  # noqa: F811
    entry = registry.pretrained.get("siglip-base-patch16-224")
    monkeypatch.setitem(entry.weights.options, "embed_dim", 32)
    folder = write_siglip(tmp_path / "official")
    fake_hub.create_repo(entry.weights.repo)
    fake_hub.commit(entry.weights.repo, hub_files(folder))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(images(4)):
        image.save(photos / f"photo{i}.png")
    model = mmzoo.from_pretrained("siglip-base-patch16-224")
    index = mmzoo.EmbeddingIndex.from_images(model, model.encode_images(sorted(photos.iterdir())))
    hits = model.search(["a red circle"], index, top_k=2)
    assert hits.indices.shape == (1, 2)
    go_offline(monkeypatch)
    sheet = tmp_path / "sheet.png"
    code = main(["search", "siglip-base-patch16-224", "--images", str(photos), "a red circle", "--sheet", str(sheet)])
    assert code == 0 and sheet.is_file()
    out = capsys.readouterr().out
    assert "a red circle" in out and out.count("photo") >= 4
    best = int(hits.indices[0, 0])
    assert f"photo{best}.png" in out.split("\n")[1]


def test_an_entry_size_that_does_not_fit_the_checkpoint_says_which_to_set(clip_folder):
    with pytest.raises(mmzoo.errors.ConfigError, match="set embed_dim=32"):
        from_folder(clip_folder, embed_dim=64)


def test_a_folder_with_code_or_missing_tensors_is_refused(tmp_path, clip_folder):
    import shutil

    coded = tmp_path / "coded"
    shutil.copytree(clip_folder, coded)
    (coded / "modeling_evil.py").write_text("raise SystemExit\n")
    with pytest.raises(mmzoo.errors.CheckpointError, match="carries code"):
        from_folder(coded)
    mapped = tmp_path / "mapped"
    shutil.copytree(clip_folder, mapped)
    config = json.loads((mapped / "config.json").read_text())
    (mapped / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "evil.Model"}}))
    with pytest.raises(mmzoo.errors.CheckpointError, match="carries code"):
        from_folder(mapped)
    partial = tmp_path / "partial"
    shutil.copytree(clip_folder, partial)
    tensors = load_file(str(partial / "model.safetensors"))
    tensors.pop("visual_projection.weight")
    save_file(tensors, str(partial / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"visual_projection\.weight"):
        from_folder(partial)


def test_bad_sources_and_configs_are_named_errors(tmp_path):
    with pytest.raises(mmzoo.errors.ConfigError, match="neither a zoo alias"):
        from_folder(tmp_path / "nowhere")
    with pytest.raises(mmzoo.errors.ConfigError, match="source"):
        mmzoo.create_model({"visual": {"name": "clip-vision"}, "text": {"name": "gru"}, "loss": {"name": "triplet"}})
    with pytest.raises(mmzoo.errors.ConfigError, match="model_type"):
        mmzoo.create_model(
            {
                "visual": {"name": "clip-vision", "architecture": {"model_type": "bert"}},
                "text": {"name": "gru"},
                "loss": {"name": "triplet"},
            }
        )


def test_native_entries_have_nothing_to_convert(capsys):
    with pytest.raises(mmzoo.errors.ConfigError, match="nothing to convert"):
        mmzoo.convert_checkpoint("siglip-base-patch16-224", "model.safetensors")
    assert main(["list", "--pretrained", "siglip*"]) == 0
    out = capsys.readouterr().out
    assert "google/siglip-so400m-patch14-384" in out and "Flickr30K 1K test i2t R@1 94.3" in out


def test_cached_tower_outputs_give_what_the_towers_give(tmp_path):
    """The image cache (`regions`: what extract-features writes) and the caption cache give the towers' outputs;
    the caption cache holds at most cache_captions captions and is used once filled."""
    folder = write_siglip(tmp_path / "siglip")
    model = from_folder(folder, **{"text.cache_captions": 2}).eval()
    plain = from_folder(folder).eval()
    with torch.no_grad():
        pixels = model.preprocess(images())
        cached = model.encode_images(model.visual.regions(pixels))
        direct = model.encode_images(pixels)
        torch.testing.assert_close(cached.pooled, direct.pooled)
        torch.testing.assert_close(cached.features, direct.features)
        first = model.encode_texts(CAPTIONS)
        assert len(model.text._cache) == 2
        again = model.encode_texts(CAPTIONS[::-1])
        reference = plain.encode_texts(CAPTIONS)
    torch.testing.assert_close(first.pooled, reference.pooled)
    torch.testing.assert_close(first.features, reference.features)
    torch.testing.assert_close(again.pooled, reference.pooled.flip(0))
    assert first.features.shape[1] < 64, "SigLIP's padding to 64 is not handed to the fusion block"


def head_model(**overrides):
    from mmzoo_plugins.clip.towers import tiny_architecture

    arch = tiny_architecture("siglip")
    settings = {"architecture": arch, "head": True, "head_centre": True, "head_hidden": 16, "pool": "mean"}
    return mmzoo.create_model(
        {
            "visual": {"name": "clip-vision", **settings, **overrides},
            "text": {"name": "clip-text", **settings},
            "loss": {"name": "triplet"},
            "embed_dim": 32,
        }
    )


def test_projection_head_centres_by_the_running_mean_of_real_tokens_and_can_be_an_mlp(tmp_path):
    """The dual baseline's head (benchmarks/mmca_modern.py): an MLP over the tower's outputs less their running
    mean, kept from the training batches (real tokens only) and saved with the model."""
    torch.manual_seed(0)
    model = head_model()
    head = model.visual.head
    assert [m.out_features for m in head.proj if isinstance(m, torch.nn.Linear)] == [16, 32]
    offset = torch.full((32,), 5.0)  # a shared direction, as a random tower gives every token
    rows = torch.randn(4, 1 + 3, 32) + offset
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0, 3] = False  # a padded row: not part of the mean
    rows[0, 3] = 1e6
    model.train()
    model.encode_images(rows, mask)
    real = rows[:, 1:][mask[:, 1:]]
    torch.testing.assert_close(head.token_mean, real.mean(0))  # the first batch sets the mean
    torch.testing.assert_close(head.pooled_mean, rows[:, 0].mean(0))
    model.encode_images(rows + 1.0, mask)  # later batches: averaged in (cumulative, then momentum 0.1)
    torch.testing.assert_close(head.token_mean, real.mean(0) + 0.5)
    model.eval()
    with torch.no_grad():
        out = model.encode_images(rows, mask)
        expected = head.proj(rows[:, 1:] - head.token_mean)
        torch.testing.assert_close(out.features[1:], expected[1:])
        scores = model.similarity(out, model.encode_texts(CAPTIONS))
    assert head.batches == 2 and not head.token_mean.requires_grad
    again = mmzoo.from_pretrained(f"local-dir:{model.save_pretrained(tmp_path / 'saved')}").eval()
    torch.testing.assert_close(again.visual.head.token_mean, head.token_mean)
    with torch.no_grad():
        torch.testing.assert_close(
            again.similarity(again.encode_images(rows, mask), again.encode_texts(CAPTIONS)), scores
        )


def test_a_linear_head_saved_before_the_mlp_option_still_loads():
    model = head_model(head_centre=False, head_hidden=0)
    state = model.state_dict()
    assert {k for k in state if k.startswith("visual.head.")} == {"visual.head.proj.weight", "visual.head.proj.bias"}
    old = {k.replace("visual.head.proj.", "visual.head."): v for k, v in state.items()}  # the names saved before
    old["visual.head.weight"] = torch.full_like(old["visual.head.weight"], 0.5)
    model.load_state_dict(old, strict=True)
    assert bool((model.visual.head.proj.weight == 0.5).all())


def test_head_options_without_a_head_are_a_config_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="set head=true"):
        head_model(head=False)
    assert main(["make-data", "shapes", "--out", str(tmp_path / "d"), "--images", "12"]) == 0
    sets = ["visual.head_hidden=8", 'visual.architecture={"model_type": "siglip"}', "embed_dim=64"]
    code = main(["train", "--model", "siglip", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"),
                 *(x for s in sets for x in ("--set", s))])  # fmt: skip
    assert code == 2 and "set head=true" in capsys.readouterr().err
