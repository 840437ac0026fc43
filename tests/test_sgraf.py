"""SGRAF: checkpoints in their format convert to models that score like their code; engine == forward; errors.

The reference (tests/reference/sgraf_reference.py) mirrors Paranioar/SGRAF (python3.6) model.py, train.py and
evaluation.py; checkpoints are written exactly as their train.py writes them, at tiny sizes (their VisualSA
hard-codes 36 region slots, so images have 36 regions).
"""

from __future__ import annotations

import argparse
import json
import pickle

import pytest
import torch

import mmzoo
from mmzoo.scoring import fused_matrix
from mmzoo_plugins.common.vocab import Vocabulary
from mmzoo_plugins.sgraf.fusion import SAFFusion, SGRFusion
from tests.reference import sgraf_reference as ref

IMG_DIM, EMBED, WORD, SIM = 20, 16, 12, 8
CAPTIONS = [
    "A red circle left of a blue square.",
    "a small green triangle above a big yellow circle",
    "Two blue squares!",
    "a purple triangle right of a red square",
    "the dog's ball isn't red",
    "a big circle, and a small one",
    "squares and circles",
    "an unseen word here",
    "a circle",
    "a blue square above the purple triangle; then a red circle",
]


def _vocab() -> Vocabulary:
    return Vocabulary.build(CAPTIONS[:-1], min_count=1)


def _randomise_norms(model: ref.SGRAF) -> None:
    """Non-trivial BatchNorm statistics and affine parameters and random Linear biases (their init sets biases to
    0; a trained checkpoint's are not), so that any mix-up shows."""
    g = torch.Generator().manual_seed(3)
    for part in (model.img_enc, model.txt_enc, model.sim_enc):
        for m in part.modules():
            if isinstance(m, torch.nn.Linear) and m.bias is not None:
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
    for m in model.sim_enc.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.6 - 0.3)


def _their_model(module: str, vocab_size: int, **opts) -> tuple[ref.SGRAF, argparse.Namespace]:
    torch.manual_seed(0)
    opt = ref.default_opt(
        img_dim=IMG_DIM, word_dim=WORD, embed_size=EMBED, sim_dim=SIM, module_name=module, vocab_size=vocab_size, **opts
    )
    model = ref.SGRAF(opt)
    _randomise_norms(model)
    return model, opt


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "f30k_precomp_vocab.json"
    _vocab().write(path)
    return path


def _convert(tmp_path, ckpt, vocab_file, name="out"):
    folder = mmzoo.convert_checkpoint("sgraf", ckpt, tmp_path / name, vocab=str(vocab_file))
    return mmzoo.from_pretrained(f"local-dir:{folder}").eval()


def _their_scores(model: ref.SGRAF, images: torch.Tensor, captions: list[str], vocab: Vocabulary):
    """Their evaluation: encode_data on 5 captions per image, one image row per 5, shard_attn_scores."""
    ids = [vocab.encode(c) for c in captions]
    img_embs, cap_embs, cap_lens = ref.encode_data(model, images.repeat_interleave(5, 0)[: len(ids)], ids, 4)
    return torch.from_numpy(ref.shard_attn_scores(model, img_embs[::5], cap_embs, cap_lens, shard_size=3)).float()


@pytest.mark.parametrize("module", ["SGR", "SAF"])
def test_converted_checkpoint_scores_like_their_code(tmp_path, vocab_file, module):
    theirs, opt = _their_model(module, len(_vocab()))
    ckpt = tmp_path / "model_best.pth.tar"
    ref.save_checkpoint(theirs, opt, ckpt)
    model = _convert(tmp_path, ckpt, vocab_file)
    assert model.config.fusion.name == module.lower() and model.config.dual_weight == 0.0

    images = torch.randn(2, 36, IMG_DIM)
    expected = _their_scores(theirs, images, CAPTIONS, _vocab())  # (2, 10)
    assert expected.std() > 1e-3
    with torch.no_grad():
        img, txt = model.encode_images(images), model.encode_texts(CAPTIONS)
        forward = model.fusion(img, txt)
        engine = model.similarity(img, txt)  # eval: the scoring engine, S = fused alone
        blocks = fused_matrix(model.fusion, img, txt, block_size=3, pairs_per_block=4)
        pairs = model.fusion.score_pairs(img[torch.tensor([0, 1, 1])], txt[torch.tensor([9, 0, 4])])
    torch.testing.assert_close(forward, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(engine, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(blocks, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pairs, expected[[0, 1, 1], [9, 0, 4]], atol=1e-6, rtol=1e-5)


def test_training_mode_matches_their_batch_statistics():
    """Train mode (dropout off): VisualSA's slot BatchNorm over the batch, SAF's BatchNorm per caption."""
    vocab = _vocab()
    theirs, _ = _their_model("SAF", len(vocab), no_imgnorm=True)
    for m in [theirs.txt_enc, theirs.sim_enc]:
        for d in m.modules():
            if isinstance(d, torch.nn.Dropout):
                d.p = 0.0
    model = mmzoo.create_model(
        "saf",
        **{
            "embed_dim": EMBED,
            "visual.in_dim": IMG_DIM,
            "visual.normalize": False,
            "text.word_dim": WORD,
            "fusion.sim_dim": SIM,
        },
    )
    model.text.set_vocabulary(vocab)
    model.fusion.config.dropout = 0.0
    for module in model.fusion.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.text.dropout.p = 0.0
    sd = theirs.state_dict()
    model.load_state_dict(
        {
            **{f"visual.{k}": v for k, v in sd[0].items()},
            **{f"text.{k}": v for k, v in sd[1].items()},
            **{f"fusion.{k}": v for k, v in sd[2].items()},
        }
    )
    images = torch.randn(4, 36, IMG_DIM)
    captions = CAPTIONS[:4]
    theirs.train_start()
    model.train()
    ims, caps, lengths, order = ref.collate(images, [vocab.encode(c) for c in captions])
    expected = theirs.forward_sim(*theirs.forward_emb(ims, caps, lengths))
    img, txt = model.encode_images(images[order]), model.encode_texts([captions[i] for i in order])
    got = model.fusion(img, txt)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    for key, value in theirs.sim_enc.state_dict().items():
        torch.testing.assert_close(model.fusion.state_dict()[key].float(), value.float(), msg=key)
    # their loss's gradients reach every trainable parameter; the frozen biases get none in their code either
    ref.ContrastiveLoss(0.2, True)(got).backward()
    ref.ContrastiveLoss(0.2, True)(expected).backward()
    theirs_grads = dict(theirs.sim_enc.named_parameters())
    for name, param in model.fusion.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert float(theirs_grads[name].grad.abs().max()) < 1e-6, name


@pytest.mark.parametrize("cls", [SGRFusion, SAFFusion])
def test_engine_equals_forward_with_padding_and_blocks(cls):
    torch.manual_seed(1)
    fusion = cls(cls.Config(sim_dim=8, regions=10, block_pairs=5), mmzoo.plugin.BuildContext(embed_dim=16)).eval()
    for module in fusion.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    img_mask = torch.arange(10)[None] < torch.tensor([10, 4, 7, 1, 9, 2])[:, None]
    txt_mask = torch.arange(8)[None] < torch.tensor([3, 8, 1, 5, 2, 6, 4])[:, None]
    images = mmzoo.plugin.Fragments(torch.randn(6, 10, 16), img_mask, torch.randn(6, 16))
    texts = mmzoo.plugin.Fragments(torch.randn(7, 8, 16), txt_mask, torch.randn(7, 16))
    with torch.no_grad():
        whole = fusion(images, texts)
        engine = fused_matrix(fusion, images, texts, block_size=4, pairs_per_block=6)
        one_by_one = torch.stack(
            [torch.cat([fusion(images[i : i + 1], texts[j : j + 1]) for j in range(7)], 1)[0] for i in range(6)]
        )
        img_cache, txt_cache = fusion.prepare_images(images), fusion.prepare_texts(texts)
        idx_i, idx_t = torch.tensor([5, 0, 3, 3]), torch.tensor([0, 6, 2, 1])
        listed = fusion.score_prepared_pairs(img_cache, txt_cache, idx_i, idx_t)
        nan_pad = mmzoo.plugin.Fragments(
            images.features.masked_fill(~img_mask[..., None], float("nan")), img_mask, images.pooled
        )
        noisy = fusion(nan_pad, texts)
    torch.testing.assert_close(engine, whole, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(one_by_one, whole, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(listed, whole[idx_i, idx_t], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(noisy, whole, atol=1e-6, rtol=1e-5)
    # the engine never moves the running statistics, even on a model left in training mode
    before = {k: v.clone() for k, v in fusion.state_dict().items()}
    fusion.train()
    fused_matrix(fusion, images, texts, block_size=4)
    assert all(torch.equal(before[k], v) for k, v in fusion.state_dict().items())


def test_images_with_more_regions_than_slots_are_refused():
    fusion = SAFFusion(SAFFusion.Config(sim_dim=8, regions=4), mmzoo.plugin.BuildContext(embed_dim=16)).eval()
    images = mmzoo.plugin.Fragments(torch.randn(2, 6, 16), torch.ones(2, 6, dtype=torch.bool), torch.randn(2, 16))
    texts = mmzoo.plugin.Fragments(torch.randn(1, 3, 16), torch.ones(1, 3, dtype=torch.bool), torch.randn(1, 16))
    with pytest.raises(mmzoo.errors.InputError, match=r"fusion\.regions"):
        fusion(images, texts)
    images.mask[:, 4:] = False  # extra slots that are padding are fine
    assert fusion(images, texts).shape == (2, 1)


# -- tokenizer and vocabulary ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caption", "tokens"),
    [  # what nltk.tokenize.word_tokenize(caption.lower()) gives (checked against NLTK 3.10), except the last
        # two cases, where the 2018 Treebank rules that built their vocabularies (which hold "water.." and
        # "'stop") differ from today's NLTK
        (
            "A man's dog can't catch the frisbee.",
            ["a", "man", "'s", "dog", "ca", "n't", "catch", "the", "frisbee", "."],
        ),
        ('Two dogs (brown) play "fetch".', ["two", "dogs", "(", "brown", ")", "play", "``", "fetch", "''", "."]),
        (
            "He cannot go... ok; 3,000 people at 10:30!",
            ["he", "can", "not", "go", "...", "ok", ";", "3,000", "people", "at", "10:30", "!"],
        ),
        ("A dog runs. A cat sits.", ["a", "dog", "runs", ".", "a", "cat", "sits", "."]),
        ("Mr. Smith waves at the camera", ["mr.", "smith", "waves", "at", "the", "camera"]),
        ("they're gonna wanna go", ["they", "'re", "gon", "na", "wan", "na", "go"]),
        ("A U.S. flag", ["a", "u.s.", "flag"]),
        (
            "boats on the water.. a sign says 'stop'",
            ["boats", "on", "the", "water..", "a", "sign", "says", "'stop", "'"],
        ),
    ],
)
def test_tokenizer_follows_nltk_word_tokenize(caption, tokens):
    from mmzoo_plugins.sgraf.text import word_tokenize

    assert word_tokenize(caption) == tokens


def test_vocabulary_reads_and_writes_their_json(tmp_path):
    theirs = {
        "word2idx": {"<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3, "dog": 4, ".": 5},
        "idx2word": {"0": "<pad>", "1": "<start>", "2": "<end>", "3": "<unk>", "4": "dog", "5": "."},
        "idx": 6,
    }
    path = tmp_path / "v.json"
    path.write_text(json.dumps(theirs))
    vocab = Vocabulary.read(path)
    assert vocab.encode("A dog.") == [1, 3, 4, 5, 2]
    vocab.write(tmp_path / "back.json")
    assert json.loads((tmp_path / "back.json").read_text()) == theirs
    built = Vocabulary.build(["b a b", "a c", "b"], min_count=2)
    assert built.words == ["<pad>", "<start>", "<end>", "<unk>", "b", "a"]  # first appearance, count >= 2
    for bad in (
        {"word2idx": {"dog": 0}},
        {"words": []},
        {**theirs, "idx": 9},
        {**theirs, "word2idx": {**theirs["word2idx"], "cat": 9}},
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(mmzoo.errors.CheckpointError):
            Vocabulary.read(path)


# -- converter errors -----------------------------------------------------------------------------------------


def _checkpoint(tmp_path, module="SGR", mutate=None, opt_changes=None):
    theirs, opt = _their_model(module, len(_vocab()), **(opt_changes or {}))
    state = {"epoch": 3, "model": theirs.state_dict(), "best_rsum": 400.0, "opt": opt, "Eiters": 10}
    if mutate:
        mutate(state)
    path = tmp_path / "ckpt.pth.tar"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["model"][2].pop("sim_eval_w.weight"), "sim_eval_w.weight"),
        (lambda s: s["model"][0].__setitem__("extra.weight", torch.zeros(2)), "extra.weight"),
        (lambda s: s["model"][2].__setitem__("sim_tranloc_w.weight", torch.zeros(3, 3)), "sim_tranloc_w.weight"),
        (lambda s: (s["model"].pop(2), delattr(s["opt"], "module_name"), delattr(s["opt"], "sim_dim")), "SCAN"),
        (lambda s: s["model"].append({}), "3 state dicts"),
        (lambda s: setattr(s["opt"], "module_name", "AVE"), "module_name"),
        (lambda s: delattr(s["opt"], "sim_dim"), "sim_dim"),
        (lambda s: s.pop("opt"), "not an SGRAF checkpoint"),
    ],
)
def test_converter_names_what_does_not_fit(tmp_path, vocab_file, mutate, message):
    path = _checkpoint(tmp_path, mutate=mutate)
    with pytest.raises(mmzoo.errors.CheckpointError, match=message):
        mmzoo.convert_checkpoint("sgraf", path, tmp_path / "out", vocab=str(vocab_file))
    assert not (tmp_path / "out").exists()


def test_converter_checks_the_vocabulary(tmp_path, vocab_file):
    path = _checkpoint(tmp_path)
    with pytest.raises(mmzoo.errors.CheckpointError, match="--vocab"):
        mmzoo.convert_checkpoint("sgraf", path, tmp_path / "a")
    small = tmp_path / "small.json"
    Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "dog"]).write(small)
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"f30k_precomp_vocab\.json"):
        mmzoo.convert_checkpoint("sgraf", path, tmp_path / "b", vocab=str(small))


def test_converter_refuses_other_pickled_classes(tmp_path, vocab_file):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "evil.pth.tar"
    torch.save({"epoch": 1, "model": [], "opt": Evil()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(mmzoo.errors.CheckpointError):
        mmzoo.convert_checkpoint("sgraf", path, tmp_path / "out", vocab=str(vocab_file))


def test_converter_takes_architecture_from_opt(tmp_path, vocab_file):
    path = _checkpoint(tmp_path, "SGR", opt_changes={"sgr_step": 2, "bi_gru": False, "no_txtnorm": True})
    model = mmzoo.from_pretrained(
        f"local-dir:{mmzoo.convert_checkpoint('sgraf', path, tmp_path / 'o', vocab=str(vocab_file))}"
    )
    cfg = model.config
    assert (cfg.embed_dim, cfg.visual.in_dim, cfg.fusion.sim_dim, cfg.fusion.steps) == (EMBED, IMG_DIM, SIM, 2)
    assert cfg.text.bidirectional is False and cfg.text.normalize is False and cfg.fusion.regions == 36
    saved = json.loads((tmp_path / "o" / "config.json").read_text())
    assert saved["converted_from"]["converter"] == "sgraf"


# -- recipes and zoo ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "epochs", "decay"), [("sgr", 40, 30), ("saf", 30, 20)])
def test_recipes_are_theirs(name, epochs, decay):
    recipe = mmzoo.registry.model.get(name)
    config = mmzoo.config.ModelConfig.parse(recipe.config)
    assert (config.dual_weight, config.alpha, config.embed_dim) == (0.0, 1.0, 1024)
    assert config.fusion.name == name and config.fusion.sim_dim == 256 and config.visual.in_dim == 2048
    assert config.text.word_dim == 300 and config.text.bidirectional
    assert config.loss.margin == 0.2 and config.loss.hardest_negative
    t = recipe.training
    assert (t["epochs"], t["lr_decay_every"], t["lr"], t["batch_size"], t["grad_clip"], t["warmup_epochs"]) == (
        epochs,
        decay,
        2e-4,
        128,
        2.0,
        0,
    )


def test_zoo_entries_point_to_the_authors_downloads():
    entries = {e.alias: e for e in (mmzoo.registry.pretrained.get(a) for a in mmzoo.registry.pretrained.names("s*"))}
    for dataset in ("f30k", "coco"):
        for module in ("saf", "sgr"):
            entry = entries[f"{module}-{dataset}"]
            assert entry.status == mmzoo.plugin.MANUAL and entry.weights.format == "sgraf"
            assert entry.weights.url.startswith("https://drive.google.com/") and entry.weights.repo is None
            assert f"mmzoo convert {module}-{dataset}" in entry.notes
        ensemble = entries[f"sgraf-{dataset}"]
        assert ensemble.members == (f"saf-{dataset}", f"sgr-{dataset}")
    assert entries["sgraf-f30k"].published_results["Flickr30K 1K test"]["rsum"] == 500.8
    assert entries["sgraf-coco"].published_results["COCO 1K (5-fold)"]["rsum"] == 523.8


@pytest.mark.parametrize("name", ["sgr-f30k", "saf-f30k", "sgr-coco", "saf-coco"])
def test_config_files_parse_and_follow_their_readme(name):
    from pathlib import Path

    from mmzoo.config import load_config_file

    data = load_config_file(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    module = name.split("-")[0]
    config = mmzoo.config.ModelConfig.parse(data["model"])
    assert config.to_dict() == mmzoo.config.ModelConfig.parse(mmzoo.registry.model.get(module).config).to_dict()
    epochs, decay = {"sgr-f30k": (40, 30), "saf-f30k": (30, 20)}.get(name, (20, 10))
    assert (data["training"]["epochs"], data["training"]["lr_decay_every"]) == (epochs, decay)


def test_ensemble_entry_averages_the_installed_members(tmp_path, vocab_file, monkeypatch):
    """`mmzoo convert saf-f30k FILE` and `... sgr-f30k FILE` install the members; sgraf-f30k is their mean."""
    monkeypatch.setenv("MMZOO_CACHE", str(tmp_path / "cache"))
    vocab = _vocab()
    images = torch.randn(2, 36, IMG_DIM)
    expected = []
    for module in ("SAF", "SGR"):
        theirs, opt = _their_model(module, len(vocab))
        ckpt = tmp_path / f"{module}.pth.tar"
        ref.save_checkpoint(theirs, opt, ckpt)
        mmzoo.convert_checkpoint(f"{module.lower()}-f30k", ckpt, vocab=str(vocab_file))
        expected.append(_their_scores(theirs, images, CAPTIONS, vocab))
    ensemble = mmzoo.from_pretrained("sgraf-f30k")
    assert isinstance(ensemble, mmzoo.Ensemble)
    with torch.no_grad():
        scores = ensemble.similarity(ensemble.encode_images(images), ensemble.encode_texts(CAPTIONS))
    torch.testing.assert_close(scores, (expected[0] + expected[1]) / 2, atol=1e-6, rtol=1e-5)
