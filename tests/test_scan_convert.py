"""SCAN checkpoints written exactly as SCAN's train.py writes them, converted, give SCAN's similarities.

The reference (tests/reference/scan_reference.py) mirrors SCAN's modules, so its state dicts are
theirs; its ``shard_xattn_*`` is SCAN's per-caption loop. Every raw_feature_norm x agg_func x direction
is compared, on the engine path (``model.similarity`` in eval mode) and on ``fusion.forward``.
"""

from __future__ import annotations

import argparse
import itertools
import pickle

import pytest
import torch

import mmzoo
from tests.reference import scan_reference as ref
from tests.test_scan_text import NLTK_TOKENS

CAPTIONS = list(NLTK_TOKENS)
NORMS = ["softmax", "l2norm", "clipped_l2norm", "l1norm", "clipped_l1norm", "clipped", "no_norm"]
AGGS = ["LogSumExp", "Max", "Sum", "Mean"]
N_IMAGES, REGIONS, IMG_DIM, EMBED, WORD = 5, 6, 24, 32, 16


def write_checkpoint(tmp_path, seed=0, state_hook=None, save_kwargs=None, **opt_changes):
    """A SCAN run at tiny sizes, saved by save_checkpoint; returns (checkpoint, vocab file, model, opt, vocab)."""
    vocab = ref.build_vocab([NLTK_TOKENS[c] for c in CAPTIONS], threshold=1)
    opt = ref.train_opts(img_dim=IMG_DIM, embed_size=EMBED, word_dim=WORD, lambda_lse=5.0, lambda_softmax=4.0)
    for key, value in opt_changes.items():
        setattr(opt, key, value)
    opt.vocab_size = len(vocab)
    torch.manual_seed(seed)
    model = ref.SCAN(opt)
    with torch.no_grad():  # trained weights are not at their init: give the bias something to carry
        model.img_enc.fc.bias.normal_(0, 0.1)
    if state_hook is not None:
        model.state_dict = (lambda original: lambda: state_hook(original()))(model.state_dict)
    path, vocab_path = tmp_path / f"model_best_{seed}.pth.tar", tmp_path / "f30k_precomp_vocab.json"
    ref.serialize_vocab(vocab, vocab_path)
    ref.save_checkpoint(model, opt, path, **(save_kwargs or {}))
    return path, vocab_path, model, opt, vocab


def reference_sims(model, opt, vocab, images):
    ids = [[vocab("<start>"), *(vocab(t) for t in NLTK_TOKENS[c]), vocab("<end>")] for c in CAPTIONS]
    img_embs, cap_embs, cap_lens = ref.encode_data(model, images, ids, batch_size=4)
    shard = ref.shard_xattn_t2i if opt.cross_attn == "t2i" else ref.shard_xattn_i2t
    return torch.from_numpy(shard(img_embs, cap_embs, cap_lens, opt, shard_size=3)).float()


def convert(tmp_path, checkpoint, vocab_path, name="converted"):
    out = mmzoo.convert_checkpoint("scan", checkpoint, tmp_path / name, vocab=str(vocab_path))
    return mmzoo.from_pretrained(f"local-dir:{out}")


def images(seed=1):
    return torch.randn(N_IMAGES, REGIONS, IMG_DIM, generator=torch.Generator().manual_seed(seed)).numpy()


def mmzoo_sims(model, feats):
    model.eval()
    with torch.no_grad():
        img = model.encode_images(torch.from_numpy(feats))
        txt = model.encode_texts(CAPTIONS)
        return model.similarity(img, txt, block_size=3), model.fusion(img, txt)


@pytest.mark.parametrize(("cross_attn", "raw_feature_norm"), list(itertools.product(["t2i", "i2t"], NORMS)))
def test_converted_checkpoint_gives_their_similarities(tmp_path, cross_attn, raw_feature_norm):
    agg = AGGS[NORMS.index(raw_feature_norm) % 4]
    path, vocab_path, model, opt, vocab = write_checkpoint(
        tmp_path, cross_attn=cross_attn, raw_feature_norm=raw_feature_norm, agg_func=agg
    )
    converted = convert(tmp_path, path, vocab_path)
    assert converted.config.fusion.name == f"scan-{cross_attn}"
    fusion = converted.config.fusion.params
    assert (fusion["raw_feature_norm"], fusion["agg_func"], fusion["lambda_softmax"], fusion["lambda_lse"]) == (
        raw_feature_norm,
        agg,
        4.0,
        5.0,
    )
    assert converted.config.dual_weight == 0.0 and converted.config.alpha == 1.0
    feats = images()
    expected = reference_sims(model, opt, vocab, feats)
    engine, forward = mmzoo_sims(converted, feats)
    torch.testing.assert_close(engine, expected, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(forward, expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("cross_attn", ["t2i", "i2t"])
def test_every_option_pair_matches_their_loop(tmp_path, cross_attn):
    path, vocab_path, model, opt, vocab = write_checkpoint(tmp_path, cross_attn=cross_attn)
    converted = convert(tmp_path, path, vocab_path)
    feats = images(seed=2)
    for norm, agg in itertools.product(NORMS, AGGS):
        converted.fusion.config.raw_feature_norm = norm
        converted.fusion.config.agg_func = agg
        opt.raw_feature_norm, opt.agg_func = norm, agg
        engine, forward = mmzoo_sims(converted, feats)
        expected = reference_sims(model, opt, vocab, feats)
        torch.testing.assert_close(engine, expected, atol=2e-5, rtol=1e-4, msg=f"{norm} {agg}")
        torch.testing.assert_close(forward, expected, atol=2e-5, rtol=1e-4, msg=f"{norm} {agg}")


def test_weight_norm_unidirectional_two_layers_legacy_file(tmp_path):
    """precomp_enc_type=weight_norm, a 2-layer uni-GRU, no_imgnorm; a non-zip file with pickle protocol 2
    (what PyTorch 0.3 / Python 2 wrote) and weight_g saved with shape (1,) as PyTorch 0.3 did."""

    def old_g(states):
        img, txt = states
        img["fc.weight_g"] = img["fc.weight_g"].reshape(1)
        return [img, txt]

    path, vocab_path, model, opt, vocab = write_checkpoint(
        tmp_path,
        precomp_enc_type="weight_norm",
        bi_gru=False,
        num_layers=2,
        no_imgnorm=True,
        cross_attn="i2t",
        agg_func="Mean",
        state_hook=old_g,
        save_kwargs={"_use_new_zipfile_serialization": False, "pickle_protocol": 2},
    )
    with open(path, "rb") as f:
        assert f.read(2) != b"PK", "expected the legacy (non-zip) format"
    converted = convert(tmp_path, path, vocab_path)
    assert converted.config.visual.params["precomp_enc_type"] == "weight_norm"
    assert converted.config.text.params["bidirectional"] is False and converted.config.text.params["layers"] == 2
    feats = images(seed=3)
    engine, forward = mmzoo_sims(converted, feats)
    expected = reference_sims(model, opt, vocab, feats)
    torch.testing.assert_close(engine, expected, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(forward, expected, atol=2e-5, rtol=1e-4)


# -- what is refused, and how it is named ---------------------------------------------------------------------------
def _broken(tmp_path, mutate, **opt_changes):
    path, vocab_path, *_ = write_checkpoint(tmp_path, **opt_changes)
    ckpt = mmzoo.plugin.read_foreign_checkpoint(path)
    mutate(ckpt)
    torch.save(ckpt, path)
    return path, vocab_path


def _convert_fails(tmp_path, path, vocab_path, match):
    with pytest.raises(mmzoo.errors.CheckpointError, match=match):
        mmzoo.convert_checkpoint("scan", path, tmp_path / "out", vocab=str(vocab_path))
    assert not (tmp_path / "out").exists()


def test_missing_tensor_is_named(tmp_path):
    path, vocab = _broken(tmp_path, lambda c: c["model"][1].pop("rnn.bias_hh_l0_reverse"))
    _convert_fails(tmp_path, path, vocab, r"missing.*text\.rnn\.bias_hh_l0_reverse")


def test_unexpected_tensor_is_named(tmp_path):
    path, vocab = _broken(tmp_path, lambda c: c["model"][0].__setitem__("fc2.weight", torch.zeros(2, 2)))
    _convert_fails(tmp_path, path, vocab, r"unexpected.*visual\.fc2\.weight")


def test_mis_shaped_tensor_is_named(tmp_path):
    path, vocab = _broken(tmp_path, lambda c: c["model"][0].__setitem__("fc.bias", torch.zeros(EMBED + 1)))
    _convert_fails(tmp_path, path, vocab, r"another shape.*visual\.fc\.bias")


def test_options_that_do_not_fit_the_weights_are_refused(tmp_path):
    path, vocab = _broken(tmp_path, lambda c: setattr(c["opt"], "img_dim", IMG_DIM * 2))
    _convert_fails(tmp_path, path, vocab, r"visual\.fc\.weight")


def test_vocabulary_that_does_not_fit_the_embedding(tmp_path):
    path, vocab_path, *_ = write_checkpoint(tmp_path)
    bigger = ref.deserialize_vocab(vocab_path)
    bigger.add_word("zebra")
    ref.serialize_vocab(bigger, tmp_path / "other_vocab.json")
    _convert_fails(tmp_path, path, tmp_path / "other_vocab.json", r"holds \d+ words but .* embedding has \d+ rows")


def test_missing_vocabulary_file(tmp_path):
    path, _, *_ = write_checkpoint(tmp_path)
    _convert_fails(tmp_path, path, tmp_path / "nowhere.json", "Cannot read the SCAN vocabulary")


def test_sgraf_checkpoint_is_refused(tmp_path):
    path, vocab = _broken(tmp_path, lambda c: c["model"].append({"sim_eval_w.weight": torch.zeros(1, 256)}))
    _convert_fails(tmp_path, path, vocab, "3 state dicts.*sgraf")


def test_vsepp_checkpoint_is_refused(tmp_path):
    def vsepp(c):
        for name in ("cross_attn", "raw_feature_norm", "agg_func", "lambda_lse", "lambda_softmax", "precomp_enc_type"):
            delattr(c["opt"], name)

    path, vocab = _broken(tmp_path, vsepp)
    _convert_fails(tmp_path, path, vocab, "not a SCAN checkpoint.*VSE")


def test_unknown_option_value_is_named(tmp_path):
    path, vocab = _broken(tmp_path, lambda c: setattr(c["opt"], "agg_func", "Median"))
    _convert_fails(tmp_path, path, vocab, "opt.agg_func is 'Median'")


def test_not_a_training_checkpoint(tmp_path):
    _, vocab_path, *_ = write_checkpoint(tmp_path)
    torch.save({"state_dict": {}}, tmp_path / "weights.pth")
    _convert_fails(tmp_path, tmp_path / "weights.pth", vocab_path, "not a checkpoint of SCAN's train.py")


class Payload:
    """Any class other than argparse.Namespace must never be unpickled."""


def test_checkpoint_with_another_pickled_class_is_refused(tmp_path):
    _, vocab_path, *_ = write_checkpoint(tmp_path)
    torch.save({"model": [{}, {}], "opt": argparse.Namespace(), "extra": Payload()}, tmp_path / "evil.pth.tar")
    _convert_fails(tmp_path, tmp_path / "evil.pth.tar", vocab_path, "Payload")


def test_garbage_file_is_refused(tmp_path):
    _, vocab_path, *_ = write_checkpoint(tmp_path)
    (tmp_path / "garbage.pth.tar").write_bytes(pickle.dumps([1, 2, 3])[:5] + b"\x00garbage")
    _convert_fails(tmp_path, tmp_path / "garbage.pth.tar", vocab_path, "garbage.pth.tar")


def test_no_zoo_entry_pretends_to_have_weights():
    assert not [a for a, recipe in mmzoo.list_pretrained() if recipe.startswith("scan")]


def _as_python2_pickle(path):
    """Rewrite a legacy torch file so its strings are Python-2 byte strings (SHORT_BINSTRING), as a
    checkpoint saved by SCAN's Python 2.7 / PyTorch 0.3 code holds them."""
    import io
    import pickletools

    data = path.read_bytes()
    stream, out, pos = io.BytesIO(data), bytearray(), 0
    for index in range(5):  # magic, protocol, sys_info, the checkpoint, the storage keys; then raw storages
        ops = list(pickletools.genops(stream))
        end = stream.tell()
        if index != 3:
            out += data[pos:end]
        else:
            bounds = [op[2] for op in ops[1:]] + [end]
            for (op, arg, start), stop in zip(ops, bounds, strict=True):
                if op.name == "BINUNICODE" and len(arg.encode()) < 256:
                    raw = arg.encode()
                    out += b"U" + bytes([len(raw)]) + raw
                else:
                    out += data[start:stop]
        pos = end
    path.write_bytes(bytes(out) + data[pos:])


def test_python2_checkpoint_with_byte_strings(tmp_path):
    path, vocab_path, model, opt, vocab = write_checkpoint(
        tmp_path, cross_attn="t2i", save_kwargs={"_use_new_zipfile_serialization": False, "pickle_protocol": 2}
    )
    _as_python2_pickle(path)
    assert b"U\ncross_attn" in path.read_bytes() and b"X\n\x00\x00\x00cross_attn" not in path.read_bytes()
    converted = convert(tmp_path, path, vocab_path)
    assert converted.config.fusion.params["agg_func"] == "LogSumExp"
    feats = images(seed=4)
    engine, _ = mmzoo_sims(converted, feats)
    torch.testing.assert_close(engine, reference_sims(model, opt, vocab, feats), atol=2e-5, rtol=1e-4)


def test_cli_convert_then_load_and_provenance(tmp_path, capsys):
    import json

    from mmzoo.cli import main

    path, vocab_path, model, opt, vocab = write_checkpoint(tmp_path, cross_attn="i2t", agg_func="Mean")
    out = tmp_path / "scan-cli"
    assert main(["convert", "scan", str(path), "--vocab", str(vocab_path), "--out", str(out)]) == 0
    assert "local-dir:" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert "scan" in json.dumps(config.get("converted_from", {}))
    converted = mmzoo.from_pretrained(f"local-dir:{out}")
    feats = images(seed=5)
    engine, _ = mmzoo_sims(converted, feats)
    torch.testing.assert_close(engine, reference_sims(model, opt, vocab, feats), atol=2e-5, rtol=1e-4)


def test_the_vocabulary_option_is_required(tmp_path):
    path, *_ = write_checkpoint(tmp_path)
    with pytest.raises(mmzoo.errors.MMZooError, match="vocab"):
        mmzoo.convert_checkpoint("scan", path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
