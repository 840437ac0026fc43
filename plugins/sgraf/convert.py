"""``mmzoo convert sgraf CHECKPOINT --vocab VOCAB.json --out DIR``: SGRAF's own checkpoints as mmzoo models.

Reads ``model_best.pth.tar`` / ``checkpoint_N.pth.tar`` from their ``train.py`` (python3.6 branch) through
:func:`read_foreign_checkpoint` (only ``argparse.Namespace`` is unpickled), builds the recipe ``sgr`` or
``saf`` with the sizes their ``opt`` records, installs their vocabulary and loads every tensor strictly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

import mmzoo
from mmzoo.errors import CheckpointError
from mmzoo.plugin import ComponentConfig, Converter, load_state_strict, read_foreign_checkpoint
from mmzoo_plugins.common.vocab import Vocabulary
from mmzoo_plugins.sgraf import checkpoint as ckpt_io
from mmzoo_plugins.sgraf.zoo import CITATION, CODE, PAPER


class SGRAFConverterConfig(ComponentConfig):
    vocab: str | None = Field(
        None,
        description="Their vocabulary JSON, e.g. vocab/f30k_precomp_vocab.json of Paranioar/SGRAF (required).",
    )


class SGRAFConverter(Converter):
    """SGRAF (SGR or SAF) checkpoints written by Paranioar/SGRAF's train.py."""

    Config = SGRAFConverterConfig
    description = "SGRAF checkpoints (Paranioar/SGRAF python3.6 train.py's model_best.pth.tar, SGR or SAF)"
    paper = PAPER
    citation = CITATION
    code = CODE
    license = "apache-2.0"

    def convert(self, checkpoint: Path) -> mmzoo.MatchingModel:
        source = Path(checkpoint).name
        if self.config.vocab is None:
            raise CheckpointError(
                "SGRAF checkpoints do not carry their vocabulary: pass --vocab with the JSON from their repository "
                "(vocab/f30k_precomp_vocab.json or vocab/coco_precomp_vocab.json, as opt.data_name says)."
            )
        vocab = Vocabulary.load(self.config.vocab)
        states, opt = ckpt_io.split_checkpoint(read_foreign_checkpoint(checkpoint), source)
        config = ckpt_io.architecture(opt, states, source)
        ckpt_io.check_vocabulary(vocab, opt, states, source, self.config.vocab)
        model = mmzoo.create_model(config)
        model.text.set_vocabulary(vocab)
        mapped = ckpt_io.fill_batch_counters(ckpt_io.map_tensors(states), model.state_dict())
        load_state_strict(model, mapped, source)
        return model.eval()
