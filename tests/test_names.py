"""Names that explain themselves, one vocabulary each, and the old spellings still read for one release."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import mmzoo
from mmzoo import devices
from mmzoo.errors import ConfigError, InputError
from mmzoo.scoring.engine import compute_dtype
from mmzoo.training import TrainConfig
from mmzoo.training.precision import resolve_amp
from tests.conftest import TINY_MMCA

ROOT = Path(__file__).resolve().parents[1]


def test_every_logger_is_named_after_its_module():
    named = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("mmzoo", "plugins")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"getLogger\((?!__name__\))", line)
        and not re.search(r"getLogger\(\"(faiss|uvicorn|ray)[\".]", line)
    ]
    assert not named, f"use logging.getLogger(__name__): {named}"


def test_load_folder_and_the_deprecated_load_pretrained(tmp_path):
    model = mmzoo.create_model("vsepp", **{"embed_dim": 8, "visual.in_dim": 6, "text.word_dim": 8})
    model.text.fit(["a red circle"])
    folder = model.save_pretrained(tmp_path / "m")
    assert isinstance(mmzoo.model.load_folder(folder), mmzoo.MatchingModel)
    with pytest.warns(DeprecationWarning, match="load_folder"):
        old = mmzoo.model.load_pretrained(folder)
    assert torch.equal(old.visual.fc.weight, model.visual.fc.weight)


def test_one_precision_vocabulary_for_training_and_scoring():
    assert devices.PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    cpu = torch.device("cpu")
    assert TrainConfig(amp="off").amp == "fp32" == TrainConfig(amp="fp32").amp  # the old spelling still reads
    assert resolve_amp("off", cpu) == resolve_amp("auto", cpu) == "fp32" and resolve_amp("bf16", cpu) == "bf16"
    assert compute_dtype(cpu, "off") == compute_dtype(cpu, "fp32") == torch.float32
    assert compute_dtype(cpu, "fp16") == torch.float16
    with pytest.raises(ConfigError, match=r"training\.amp"):
        TrainConfig.for_recipe({}, {"amp": "half"})
    with pytest.raises(InputError, match="precision must be one of auto, fp32, bf16, fp16"):
        compute_dtype(cpu, "half")


def test_one_resolve_device():
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="--device 'gpu0' is not a torch device"):
        devices.resolve_device("gpu0", option="--device", error=InputError)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"training\.device cuda: CUDA is not available"):
            devices.resolve_device("cuda", 0, option="training.device")


def test_one_block_size_name_and_the_old_one_still_reads():
    overrides = {**TINY_MMCA, "text.name": "gru"}
    model = mmzoo.create_model("mmca", **overrides, **{"fusion.pairs_per_block": 6})
    assert model.fusion.pairs_per_block == 6 and "block_pairs" not in model.config.to_dict()["fusion"]
    with pytest.warns(DeprecationWarning, match="'block_pairs' is now 'pairs_per_block'"):
        old = mmzoo.create_model("mmca", **overrides, **{"fusion.block_pairs": 7})
    assert old.fusion.pairs_per_block == 7 and old.config.to_dict()["fusion"]["pairs_per_block"] == 7
