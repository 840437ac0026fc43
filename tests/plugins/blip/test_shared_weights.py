"""BLIP and BLIP-2 hold each official weight once: the components of one model share modules (``BuildContext.share``).

BLIP's ``blip-text`` and ``blip-itm`` share the text encoder's self-attention and feed-forward layers; BLIP-2's three
components share the Q-Former, its queries and ``vision_projection``. The built model then has exactly the official
folder's tensors (by name, once each), a save writes each once (the other names as aliases in the file's metadata)
and loads back strictly; two models never share with each other.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import mmzoo
from mmzoo.cli import main
from tests.plugins.blip._tiny import CAPTIONS, photos, write_blip_folder
from tests.plugins.blip._tiny_blip2 import write_blip2_folder

SECTIONS = ("visual", "text", "fusion")


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    return write_blip_folder(tmp_path_factory.mktemp("blip") / "blip-itm-base-coco")


@pytest.fixture(scope="module")
def blip2_folder(tmp_path_factory):
    return write_blip2_folder(tmp_path_factory.mktemp("blip2") / "blip2-itm-vit-g-coco")


def build(recipe, folder):
    return mmzoo.create_model(recipe, **{f"{s}.pretrained": str(folder) for s in SECTIONS}).eval()


@pytest.fixture(scope="module")
def blip(blip_folder):
    return build("blip-itm-base", blip_folder)


@pytest.fixture(scope="module")
def blip2(blip2_folder):
    return build("blip2-itm-vit-g", blip2_folder)


def official(folder):
    return load_file(str(folder / "model.safetensors"))


def stored_names(model):
    """The names a save stores (each tensor once), as the official folder names them (section prefix cut)."""
    stored, _ = mmzoo.checkpoint.split_aliases(model.state_dict(keep_vars=True))
    return sorted(key.split(".", 1)[1] for key in stored)


def scores(model):
    with torch.no_grad():
        images, texts = model.encode_images(photos()), model.encode_texts(CAPTIONS)
        return images.pooled @ texts.pooled.t(), model.similarity(images, texts)


@pytest.mark.parametrize("family", ["blip", "blip2"])
def test_the_model_holds_each_official_weight_once(family, request):
    model, folder = request.getfixturevalue(family), request.getfixturevalue(f"{family}_folder")
    tensors = official(folder)
    assert sum(p.numel() for p in model.parameters()) == sum(t.numel() for t in tensors.values())
    assert stored_names(model) == sorted(tensors), "every official tensor, under its official name, once"


def test_blip_text_and_itm_run_one_text_encoder(blip):
    text, itm = blip.text.text_encoder.encoder.layer, blip.fusion.text_encoder.encoder.layer
    for a, b in zip(text, itm, strict=True):
        for part in ("attention", "intermediate", "output"):
            assert id(getattr(a, part)) == id(getattr(b, part))
    assert not hasattr(text[0], "crossattention") and blip.fusion.text_encoder.embeddings is None


def test_blip2_components_run_one_qformer(blip2):
    vision, text, itm = (m.qformer.encoder.layer for m in (blip2.visual, blip2.text, blip2.fusion))
    assert blip2.visual.query_tokens is blip2.fusion.query_tokens
    assert blip2.visual.vision_projection is blip2.fusion.vision_projection
    assert blip2.visual.qformer.layernorm is blip2.text.qformer.layernorm is blip2.fusion.qformer.layernorm
    for v, t, i in zip(vision, text, itm, strict=True):
        assert v.attention is t.attention is i.attention
        assert t.intermediate is i.intermediate and t.output is i.output
        assert v.intermediate_query is i.intermediate_query and v.output_query is i.output_query
        if i.has_cross_attention:
            assert v.crossattention is i.crossattention
    # the last text feed-forward is read by blip2-text's pass: shared, it trains (only a lone blip2-itm freezes it)
    assert all(p.requires_grad for p in text[-1].intermediate.parameters())
    lone = mmzoo.plugin.BuildContext(256)
    alone = type(blip2.fusion)(blip2.fusion.config, lone)
    assert not any(p.requires_grad for p in alone.qformer.encoder.layer[-1].intermediate.parameters())


@pytest.mark.parametrize("family", ["blip", "blip2"])
def test_a_save_writes_each_weight_once_and_loads_back_the_same(family, request, tmp_path):
    model, folder = request.getfixturevalue(family), request.getfixturevalue(f"{family}_folder")
    saved = model.save_pretrained(tmp_path / "saved")
    ours, theirs = official(saved), official(folder)
    assert len(ours) == len(theirs)
    assert sum(t.numel() * t.element_size() for t in ours.values()) == sum(
        t.numel() * t.element_size() for t in theirs.values()
    )
    with safe_open(str(saved / "model.safetensors"), framework="pt") as handle:
        aliases = json.loads(handle.metadata()["mmzoo_aliases"])
    assert aliases and set(aliases.values()) <= set(ours) and not set(aliases) & set(ours)
    assert set(aliases) | set(ours) == set(model.state_dict())
    assert json.loads((saved / "config.json").read_text())["format_version"] == 2
    again = mmzoo.from_pretrained(f"local-dir:{saved}")
    for a, b in zip(scores(again), scores(model), strict=True):
        assert torch.equal(a, b)
    assert stored_names(again) == stored_names(model), "the loaded model shares as the saved one did"


def test_a_folder_without_a_shared_weight_is_a_named_error_through_the_api_and_the_cli(blip, tmp_path, capsys):
    saved = blip.save_pretrained(tmp_path / "saved")
    weights = saved / "model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        metadata = handle.metadata()
    aliases = json.loads(metadata["mmzoo_aliases"])
    gone = next(iter(aliases.values()))
    tensors = load_file(str(weights))
    del tensors[gone]
    save_file(tensors, str(weights), metadata=metadata)
    with pytest.raises(mmzoo.errors.CheckpointError, match=rf"alias\(es\) of a missing tensor: .*\(alias of {gone}\)"):
        mmzoo.from_pretrained(f"local-dir:{saved}")
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    photos()[0].save(photo_dir / "p0.png")
    assert main(["search", f"local-dir:{saved}", "--images", str(photo_dir), "a cat"]) == 2
    assert gone in capsys.readouterr().err


def test_aliases_do_not_hide_unexpected_or_doubled_tensors(blip, tmp_path):
    saved = blip.save_pretrained(tmp_path / "saved")
    weights = saved / "model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(weights))
    save_file({**tensors, "fusion.extra.weight": torch.zeros(2)}, str(weights), metadata=metadata)
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"1 unexpected: fusion\.extra\.weight"):
        mmzoo.from_pretrained(f"local-dir:{saved}")
    alias = next(iter(json.loads(metadata["mmzoo_aliases"])))
    save_file({**tensors, alias: torch.zeros(1)}, str(weights), metadata=metadata)
    with pytest.raises(mmzoo.errors.CheckpointError, match=rf"both stored and listed as aliases: {alias}"):
        mmzoo.from_pretrained(f"local-dir:{saved}")
    save_file(tensors, str(weights), metadata={**metadata, "mmzoo_aliases": "[1, 2]"})
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"'mmzoo_aliases' must be a JSON object"):
        mmzoo.from_pretrained(f"local-dir:{saved}")


def test_a_folder_saved_before_sharing_still_loads(blip, tmp_path):
    """Each weight under every name, no aliases, format_version 1: what mmzoo wrote before the components shared."""
    saved = blip.save_pretrained(tmp_path / "saved")
    every = {k: v.detach().clone().contiguous() for k, v in blip.state_dict().items()}
    save_file(every, str(saved / "model.safetensors"), metadata={"format": "pt", "library_name": "mmzoo"})
    document = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**document, "format_version": 1}))
    again = mmzoo.from_pretrained(f"local-dir:{saved}")
    for a, b in zip(scores(again), scores(blip), strict=True):
        assert torch.equal(a, b)
    assert again.text.text_encoder.encoder.layer[0].attention is again.fusion.text_encoder.encoder.layer[0].attention


@pytest.mark.parametrize("family", ["blip", "blip2"])
def test_two_models_of_one_config_share_nothing_with_each_other(family, request):
    model = request.getfixturevalue(family)
    before = scores(model)
    other = type(model)(model.config)  # the same config: the same folder, read again
    assert not {id(p) for p in model.parameters()} & {id(p) for p in other.parameters()}
    assert not {p.data_ptr() for p in model.parameters()} & {p.data_ptr() for p in other.parameters()}
    with torch.no_grad():
        for param in other.parameters():
            param.add_(1.0)
    for a, b in zip(scores(model), before, strict=True):
        assert torch.equal(a, b)


def test_components_whose_weights_come_from_different_folders_do_not_share(blip_folder, tmp_path):
    other_folder = write_blip_folder(tmp_path / "other", seed=1)
    model = mmzoo.create_model(
        "blip-itm-base",
        **{"visual.pretrained": str(blip_folder), "text.pretrained": str(blip_folder)},
        **{"fusion.pretrained": str(other_folder)},
    )
    text, itm = model.text.text_encoder.encoder.layer[0], model.fusion.text_encoder.encoder.layer[0]
    assert text.attention is not itm.attention
    theirs = official(other_folder)["text_encoder.encoder.layer.0.attention.self.query.weight"]
    assert torch.equal(itm.attention.self.query.weight, theirs)
    assert not torch.equal(text.attention.self.query.weight, theirs)


def test_one_optimizer_step_updates_the_shared_layer_once_for_both_components(blip):
    """``model.parameters()`` holds a shared parameter once: the optimizer steps it once, both components see it."""
    model = type(blip)(blip.config)
    shared = model.text.text_encoder.encoder.layer[0].intermediate.dense.weight
    params = list(model.parameters())
    assert sum(p is shared for p in params) == 1
    assert len(params) == len({id(p) for p in params})
    model.train()
    images, texts = model.encode_images(photos()[:2]), model.encode_texts(CAPTIONS[:2])
    model.similarity(images, texts).sum().backward()
    assert shared.grad is not None and bool(shared.grad.abs().sum() > 0)
    before = shared.detach().clone()
    torch.optim.SGD(params, lr=0.1).step()
    assert torch.equal(model.fusion.text_encoder.encoder.layer[0].intermediate.dense.weight, shared)
    assert not torch.equal(shared, before)
