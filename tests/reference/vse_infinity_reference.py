"""A reference VSE-infinity, written from a reading of woodfrog/vse_infty at 29df9d6 (and its bigru branch).

The modules mirror theirs, attribute for attribute, so their ``state_dict()`` keys and shapes are the ones
their ``train.py`` saves, and their forward passes follow theirs step by step, with their own choices kept:
GPO's -10000 fill values, the MLP's BatchNorm over every row (padding included), sorted packing for the
bi-GRU, the DataParallel ``module.`` prefix. :func:`write_checkpoint` writes a file in exactly their format.
This is test code: mmzoo never imports it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def l2norm(x, dim, eps=1e-8):
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def positional_encoding_1d(d_model, length):
    pe = torch.zeros(length, d_model)
    position = torch.arange(0, length).unsqueeze(1).float()
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float) * -(math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


class GPO(nn.Module):
    def __init__(self, d_pe, d_hidden):
        super().__init__()
        self.d_pe = d_pe
        self.d_hidden = d_hidden
        self.pe_database = {}
        self.gru = nn.GRU(d_pe, d_hidden, 1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(d_hidden, 1, bias=False)

    def compute_pool_weights(self, lengths, features):
        max_len = int(lengths.max())
        pes = self.get_pe(max_len).unsqueeze(0).repeat(lengths.size(0), 1, 1)
        mask = torch.arange(max_len).expand(lengths.size(0), max_len)
        mask = (mask < lengths.long().unsqueeze(1)).unsqueeze(-1)
        pes = pes.masked_fill(mask == 0, 0)
        packed = pack_padded_sequence(pes, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out_emb, _ = pad_packed_sequence(out, batch_first=True)
        half = out_emb.size(2) // 2
        out_emb = (out_emb[:, :, :half] + out_emb[:, :, half:]) / 2
        scores = self.linear(out_emb)
        scores[torch.where(mask == 0)] = -10000
        return torch.softmax(scores / 0.1, 1), mask

    def forward(self, features, lengths):
        weights, mask = self.compute_pool_weights(lengths, features)
        features = features[:, : int(lengths.max()), :]
        ordered = features.masked_fill(mask == 0, -10000).sort(dim=1, descending=True)[0]
        ordered = ordered.masked_fill(mask == 0, 0)
        return (ordered * weights).sum(1), weights

    def get_pe(self, length):
        length = int(length)
        if length not in self.pe_database:
            self.pe_database[length] = positional_encoding_1d(self.d_pe, length)
        return self.pe_database[length]


class MLP(nn.Module):
    """Their lib/modules/mlp.py MLP: one BatchNorm per layer is built, the last one is never applied."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.output_dim = output_dim
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim, *h], [*h, output_dim], strict=True))
        self.bns = nn.ModuleList(nn.BatchNorm1d(k) for k in [*h, output_dim])

    def forward(self, x):
        b, n, d = x.size()
        x = x.reshape(b * n, d)
        for i, (bn, layer) in enumerate(zip(self.bns, self.layers, strict=True)):
            x = torch.relu(bn(layer(x))) if i < self.num_layers - 1 else layer(x)
        return x.view(b, n, self.output_dim)


class EncoderImageAggr(nn.Module):
    def __init__(self, img_dim, embed_size, precomp_enc_type="basic", no_imgnorm=False, d_pe=32, d_hidden=32):
        super().__init__()
        self.no_imgnorm = no_imgnorm
        self.precomp_enc_type = precomp_enc_type
        self.fc = nn.Linear(img_dim, embed_size)
        if precomp_enc_type == "basic":
            self.mlp = MLP(img_dim, embed_size // 2, embed_size, 2)
        self.gpool = GPO(d_pe, d_hidden)

    def forward(self, images, image_lengths):
        features = self.fc(images)
        if self.precomp_enc_type == "basic":
            features = self.mlp(images) + features
        features, _ = self.gpool(features, image_lengths)
        return features if self.no_imgnorm else l2norm(features, dim=-1)


class EncoderTextBert(nn.Module):
    """Their master-branch EncoderText, with BertModel built from a config instead of downloaded."""

    def __init__(self, embed_size, bert_config, d_pe=32, d_hidden=32):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(bert_config)  # with its pooler, as BertModel.from_pretrained builds it
        self.linear = nn.Linear(bert_config.hidden_size, embed_size)
        self.gpool = GPO(d_pe, d_hidden)

    def forward(self, x, lengths):
        bert_emb = self.bert(x, (x != 0).float())[0]
        cap_emb = self.linear(bert_emb)
        pooled, _ = self.gpool(cap_emb, lengths)
        return l2norm(pooled, dim=-1)


class EncoderTextGRU(nn.Module):
    """Their bigru-branch EncoderText; its forward needs the batch sorted by length, as their collate sorts it."""

    def __init__(self, vocab_size, embed_size, word_dim, num_layers, d_pe=32, d_hidden=32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.gpool = GPO(d_pe, d_hidden)
        self.rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True, bidirectional=True)
        self.embed.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(self.embed(x), lengths.cpu(), batch_first=True)
        out, _ = self.rnn(packed)
        cap_emb, cap_len = pad_packed_sequence(out, batch_first=True)
        half = cap_emb.size(2) // 2
        cap_emb = (cap_emb[:, :, :half] + cap_emb[:, :, half:]) / 2
        pooled, _ = self.gpool(cap_emb, cap_len)
        return l2norm(pooled, dim=-1)


class ResnetFeatureExtractor(nn.Module):
    """Their wrapper around a torchvision ResNet (WSL-Images and torchvision ResNeXt sources)."""

    def __init__(self, resnet):
        super().__init__()
        self.resnet = resnet
        r = resnet
        self.base = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3)
        self.top = nn.Sequential(r.layer4)

    def forward(self, im_data):
        top = self.top(self.base(im_data))
        return top.view(im_data.size(0), top.size(1), -1).permute(0, 2, 1)


class EncoderImageFull(nn.Module):
    def __init__(self, backbone_cnn, img_dim, embed_size, d_pe=32, d_hidden=32):
        super().__init__()
        self.backbone = backbone_cnn
        self.image_encoder = EncoderImageAggr(img_dim, embed_size, "backbone", d_pe=d_pe, d_hidden=d_hidden)

    def forward(self, images):
        base = self.backbone(images)  # eval path: every grid cell is kept
        lengths = torch.full((base.size(0),), float(base.size(1)))
        return self.image_encoder(base, lengths)


# -- tokenisation as their data loaders do it (eval mode) ---------------------------------------------------
def bert_eval_ids(tokenizer, caption):
    """Their PrecompRegionDataset + process_caption(train=False) with a slow BertTokenizer."""
    tokens = []
    for word in tokenizer.basic_tokenizer.tokenize(caption):
        tokens.extend(tokenizer.wordpiece_tokenizer.tokenize(word))
    return tokenizer.convert_tokens_to_ids(["[CLS]", *tokens, "[SEP]"])


def slow_bert_tokenizer(folder):
    """The pure-Python BertTokenizer their code calls (transformers 5 names it BertTokenizerLegacy)."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Slow
    except ImportError:  # transformers 4
        from transformers import BertTokenizer as Slow
    return Slow.from_pretrained(folder)


def bigru_eval_ids(word2idx, caption):
    """Their bigru process_caption(drop=False). ``nltk.word_tokenize(caption.lower())`` is taken from the SCAN
    family's NLTK-free reproduction (tests/test_scan_text.py checks it against recorded NLTK outputs)."""
    from mmzoo_plugins.common.tokenizer import word_tokenize

    unk = word2idx["<unk>"]
    words = word_tokenize(caption)
    return [word2idx["<start>"], *(word2idx.get(w, unk) for w in words), word2idx["<end>"]]


def pad(rows):
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out, lengths


def encode_bert_captions(txt_enc, tokenizer, captions):
    ids, lengths = pad([bert_eval_ids(tokenizer, c) for c in captions])
    return txt_enc(ids, lengths)


def encode_gru_captions(txt_enc, word2idx, captions):
    """Sort by length (their collate), encode, restore the caption order."""
    rows = [bigru_eval_ids(word2idx, c) for c in captions]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    ids, lengths = pad([rows[i] for i in order])
    out = txt_enc(ids, lengths)
    restored = torch.empty_like(out)
    restored[torch.tensor(order)] = out
    return restored


# -- their checkpoint -----------------------------------------------------------------------------------------
def make_opt(**overrides):
    """arguments.py defaults with train_region.sh's settings, as the Namespace their train.py saves."""
    opt = argparse.Namespace(
        data_path="/tmp/data/coco",
        data_name="coco",
        vocab_path="./vocab/",
        margin=0.2,
        num_epochs=25,
        batch_size=128,
        word_dim=300,
        embed_size=1024,
        grad_clip=2.0,
        learning_rate=0.0005,
        lr_update=15,
        optim="adam",
        workers=10,
        log_step=200,
        val_step=500,
        logger_name="runs/coco_butd_region_bert/log",
        model_name="runs/coco_butd_region_bert",
        resume="",
        max_violation=True,
        img_dim=2048,
        no_imgnorm=False,
        no_txtnorm=False,
        precomp_enc_type="basic",
        backbone_path="",
        backbone_source="detector",
        vse_mean_warmup_epochs=1,
        reset_start_epoch=False,
        backbone_warmup_epochs=5,
        embedding_warmup_epochs=2,
        backbone_lr_factor=0.01,
        input_scale_factor=1,
        vocab_size=30522,
    )
    for key, value in overrides.items():
        setattr(opt, key, value)
    return opt


def write_checkpoint(path, img_enc, txt_enc, opt, data_parallel=True):
    """torch.save as their train.py's save_checkpoint does (DataParallel-wrapped encoders: 'module.' keys)."""
    if data_parallel:
        img_enc, txt_enc = nn.DataParallel(img_enc), nn.DataParallel(txt_enc)
    state = {
        "epoch": opt.num_epochs,
        "model": [img_enc.state_dict(), txt_enc.state_dict()],
        "best_rsum": 512.3,
        "opt": opt,
        "Eiters": 12345,
    }
    torch.save(state, Path(path))
    return Path(path)


def randomize_batchnorm(module, seed=0):
    """Give every BatchNorm non-trivial running statistics and affine terms, so a lost tensor shows."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)
            m.num_batches_tracked.fill_(7)
    return module
