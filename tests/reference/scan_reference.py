"""A reference implementation of kuanghuei/SCAN @ 8063557, written for mmzoo's equivalence tests.

It mirrors SCAN's module structure and parameter names (so ``state_dict()`` keys and shapes are
theirs), the math of ``model.py`` (``func_attention``, ``xattn_score_t2i`` / ``xattn_score_i2t``, the
encoders), the per-caption loop of ``evaluation.py``'s ``shard_xattn_t2i`` / ``shard_xattn_i2t``, the
vocabulary JSON of ``vocab.py`` and the checkpoint that ``train.py``'s ``save_checkpoint`` writes. It is
our own code under modern PyTorch (no ``Variable``, no ``.cuda()``), checked once against SCAN's real
classes (docs/scan.md, "How the port was checked"). One deliberate difference: SCAN's ``l1norm`` and
``clipped_l1norm`` call an undefined ``l1norm_d``; here they use SCAN's ``l1norm`` helper.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def l1norm(x, dim, eps=1e-8):
    return x / (x.abs().sum(dim=dim, keepdim=True) + eps)


def l2norm(x, dim, eps=1e-8):
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


class EncoderImagePrecomp(nn.Module):
    def __init__(self, img_dim, embed_size, no_imgnorm=False):
        super().__init__()
        self.embed_size = embed_size
        self.no_imgnorm = no_imgnorm
        self.fc = nn.Linear(img_dim, embed_size)
        r = np.sqrt(6.0) / np.sqrt(self.fc.in_features + self.fc.out_features)
        self.fc.weight.data.uniform_(-r, r)
        self.fc.bias.data.fill_(0)

    def forward(self, images):
        features = self.fc(images)
        return features if self.no_imgnorm else l2norm(features, dim=-1)


class EncoderImageWeightNormPrecomp(nn.Module):
    def __init__(self, img_dim, embed_size, no_imgnorm=False):
        super().__init__()
        self.embed_size = embed_size
        self.no_imgnorm = no_imgnorm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.fc = torch.nn.utils.weight_norm(nn.Linear(img_dim, embed_size), dim=None)

    def forward(self, images):
        features = self.fc(images)
        return features if self.no_imgnorm else l2norm(features, dim=-1)


def EncoderImage(img_dim, embed_size, precomp_enc_type="basic", no_imgnorm=False):
    if precomp_enc_type == "basic":
        return EncoderImagePrecomp(img_dim, embed_size, no_imgnorm)
    if precomp_enc_type == "weight_norm":
        return EncoderImageWeightNormPrecomp(img_dim, embed_size, no_imgnorm)
    raise ValueError(precomp_enc_type)


class EncoderText(nn.Module):
    def __init__(self, vocab_size, word_dim, embed_size, num_layers, use_bi_gru=False, no_txtnorm=False):
        super().__init__()
        self.embed_size = embed_size
        self.no_txtnorm = no_txtnorm
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.use_bi_gru = use_bi_gru
        self.rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True, bidirectional=use_bi_gru)
        self.embed.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x, lengths):
        """x: (B, L) ids sorted by decreasing length (their collate_fn) -> (B, L, d), lengths."""
        packed = pack_padded_sequence(self.embed(x), lengths, batch_first=True)
        out, _ = self.rnn(packed)
        cap_emb, cap_len = pad_packed_sequence(out, batch_first=True)
        if self.use_bi_gru:
            half = cap_emb.size(2) // 2
            cap_emb = (cap_emb[:, :, :half] + cap_emb[:, :, half:]) / 2
        if not self.no_txtnorm:
            cap_emb = l2norm(cap_emb, dim=-1)
        return cap_emb, cap_len


def func_attention(query, context, opt, smooth, eps=1e-8):
    """query (n, queryL, d), context (n, sourceL, d) -> weighted context (n, queryL, d), attn (n, sourceL, queryL)."""
    batch_size, source_len = context.size(0), context.size(1)
    query_len = query.size(1)
    attn = torch.bmm(context, query.transpose(1, 2))  # (n, sourceL, queryL)
    norm = opt.raw_feature_norm
    if norm == "softmax":
        attn = torch.softmax(attn.view(batch_size * source_len, query_len), dim=1).view(
            batch_size, source_len, query_len
        )
    elif norm == "l2norm":
        attn = l2norm(attn, 2)
    elif norm == "clipped_l2norm":
        attn = l2norm(nn.LeakyReLU(0.1)(attn), 2)
    elif norm == "l1norm":
        attn = l1norm(attn, 2)
    elif norm == "clipped_l1norm":
        attn = l1norm(nn.LeakyReLU(0.1)(attn), 2)
    elif norm == "clipped":
        attn = nn.LeakyReLU(0.1)(attn)
    elif norm != "no_norm":
        raise ValueError(norm)
    attn = attn.transpose(1, 2).contiguous().view(batch_size * query_len, source_len)
    attn = torch.softmax(attn * smooth, dim=1).view(batch_size, query_len, source_len)
    attn_t = attn.transpose(1, 2).contiguous()  # (n, sourceL, queryL)
    weighted = torch.bmm(context.transpose(1, 2), attn_t).transpose(1, 2)  # (n, queryL, d)
    return weighted, attn_t


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    w12 = torch.sum(x1 * x2, dim)
    w1 = torch.norm(x1, 2, dim)
    w2 = torch.norm(x2, 2, dim)
    return (w12 / (w1 * w2).clamp(min=eps)).squeeze()


def _aggregate(row_sim, opt):
    if opt.agg_func == "LogSumExp":
        row_sim = row_sim.mul(opt.lambda_lse).exp()
        return torch.log(row_sim.sum(dim=1, keepdim=True)) / opt.lambda_lse
    if opt.agg_func == "Max":
        return row_sim.max(dim=1, keepdim=True)[0]
    if opt.agg_func == "Sum":
        return row_sim.sum(dim=1, keepdim=True)
    if opt.agg_func == "Mean":
        return row_sim.mean(dim=1, keepdim=True)
    raise ValueError(opt.agg_func)


def xattn_score_t2i(images, captions, cap_lens, opt):
    """images (n_image, n_regions, d), captions (n_caption, max_n_word, d) -> (n_image, n_caption)."""
    similarities = []
    n_image = images.size(0)
    for i in range(captions.size(0)):
        n_word = int(cap_lens[i])
        cap_i_expand = captions[i, :n_word, :].unsqueeze(0).contiguous().repeat(n_image, 1, 1)
        wei_context, _ = func_attention(cap_i_expand, images, opt, smooth=opt.lambda_softmax)
        row_sim = cosine_similarity(cap_i_expand, wei_context.contiguous(), dim=2).view(n_image, n_word)
        similarities.append(_aggregate(row_sim, opt))
    return torch.cat(similarities, 1)


def xattn_score_i2t(images, captions, cap_lens, opt):
    similarities = []
    n_image, n_region = images.size(0), images.size(1)
    for i in range(captions.size(0)):
        n_word = int(cap_lens[i])
        cap_i_expand = captions[i, :n_word, :].unsqueeze(0).contiguous().repeat(n_image, 1, 1)
        wei_context, _ = func_attention(images, cap_i_expand, opt, smooth=opt.lambda_softmax)
        row_sim = cosine_similarity(images, wei_context, dim=2).view(n_image, n_region)
        similarities.append(_aggregate(row_sim, opt))
    return torch.cat(similarities, 1)


def _shard(score_fn, images, captions, caplens, opt, shard_size):
    n_im_shard = (len(images) - 1) // shard_size + 1
    n_cap_shard = (len(captions) - 1) // shard_size + 1
    d = np.zeros((len(images), len(captions)))
    with torch.no_grad():
        for i in range(n_im_shard):
            im_start, im_end = shard_size * i, min(shard_size * (i + 1), len(images))
            for j in range(n_cap_shard):
                cap_start, cap_end = shard_size * j, min(shard_size * (j + 1), len(captions))
                im = torch.from_numpy(images[im_start:im_end])
                s = torch.from_numpy(captions[cap_start:cap_end])
                sim = score_fn(im, s, caplens[cap_start:cap_end], opt)
                d[im_start:im_end, cap_start:cap_end] = sim.numpy()
    return d


def shard_xattn_t2i(images, captions, caplens, opt, shard_size=128):
    return _shard(xattn_score_t2i, images, captions, caplens, opt, shard_size)


def shard_xattn_i2t(images, captions, caplens, opt, shard_size=128):
    return _shard(xattn_score_i2t, images, captions, caplens, opt, shard_size)


# -- vocab.py ---------------------------------------------------------------------------------------------------
class Vocabulary:
    def __init__(self):
        self.word2idx, self.idx2word, self.idx = {}, {}, 0

    def add_word(self, word):
        if word not in self.word2idx:
            self.word2idx[word] = self.idx
            self.idx2word[self.idx] = word
            self.idx += 1

    def __call__(self, word):
        return self.word2idx.get(word, self.word2idx["<unk>"])

    def __len__(self):
        return len(self.word2idx)


def build_vocab(tokenised_captions: Sequence[Sequence[str]], threshold: int = 4) -> Vocabulary:
    counts: dict[str, int] = {}
    for tokens in tokenised_captions:
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
    vocab = Vocabulary()
    for special in ("<pad>", "<start>", "<end>", "<unk>"):
        vocab.add_word(special)
    for word, n in counts.items():
        if n >= threshold:
            vocab.add_word(word)
    return vocab


def serialize_vocab(vocab, dest):
    with open(dest, "w") as f:
        json.dump({"word2idx": vocab.word2idx, "idx2word": vocab.idx2word, "idx": vocab.idx}, f)


def deserialize_vocab(src):
    with open(src) as f:
        d = json.load(f)
    vocab = Vocabulary()
    vocab.word2idx, vocab.idx2word, vocab.idx = d["word2idx"], d["idx2word"], d["idx"]
    return vocab


# -- train.py: options and the checkpoint ---------------------------------------------------------------------------
def train_opts(**changes) -> argparse.Namespace:
    """train.py's argparse defaults (plus ``vocab_size``, which train.py sets), with ``changes``."""
    opt = argparse.Namespace(
        data_path="./data/",
        data_name="f30k_precomp",
        vocab_path="./vocab/",
        margin=0.2,
        num_epochs=30,
        batch_size=128,
        word_dim=300,
        embed_size=1024,
        grad_clip=2.0,
        num_layers=1,
        learning_rate=0.0002,
        lr_update=15,
        workers=10,
        log_step=10,
        val_step=500,
        logger_name="./runs/runX/log",
        model_name="./runs/runX/checkpoint",
        resume="",
        max_violation=True,
        img_dim=2048,
        no_imgnorm=False,
        no_txtnorm=False,
        raw_feature_norm="clipped_l2norm",
        agg_func="LogSumExp",
        cross_attn="t2i",
        precomp_enc_type="basic",
        bi_gru=True,
        lambda_lse=6.0,
        lambda_softmax=9.0,
    )
    for key, value in changes.items():
        setattr(opt, key, value)
    return opt


class SCAN:
    """The two encoders of ``model.SCAN`` (the optimiser and loss are not needed here)."""

    def __init__(self, opt):
        self.img_enc = EncoderImage(opt.img_dim, opt.embed_size, opt.precomp_enc_type, opt.no_imgnorm)
        self.txt_enc = EncoderText(
            opt.vocab_size, opt.word_dim, opt.embed_size, opt.num_layers, opt.bi_gru, opt.no_txtnorm
        )
        self.Eiters = 0

    def state_dict(self):
        return [self.img_enc.state_dict(), self.txt_enc.state_dict()]

    def val_start(self):
        self.img_enc.eval()
        self.txt_enc.eval()


def save_checkpoint(model: SCAN, opt, path, epoch=7, best_rsum=321.5, **save_kwargs) -> None:
    """What ``train.py`` saves (``save_checkpoint({...}, is_best, ...)``)."""
    torch.save(
        {"epoch": epoch, "model": model.state_dict(), "best_rsum": best_rsum, "opt": opt, "Eiters": model.Eiters},
        path,
        **save_kwargs,
    )


def encode_captions(txt_enc: EncoderText, caption_ids: Sequence[Sequence[int]], batch_size: int = 4):
    """The caption half of ``evaluation.encode_data``: batches sorted by length (their collate_fn).

    Returns cap_embs (N_caps, max_n_word, d), zero-padded, and cap_lens.
    """
    n_caps = len(caption_ids)
    max_n_word = max(len(c) for c in caption_ids)
    cap_embs = np.zeros((n_caps, max_n_word, txt_enc.embed_size), dtype=np.float32)
    cap_lens = [0] * n_caps
    with torch.no_grad():
        for start in range(0, n_caps, batch_size):
            ids = list(range(start, min(start + batch_size, n_caps)))
            ids.sort(key=lambda i: len(caption_ids[i]), reverse=True)
            lengths = [len(caption_ids[i]) for i in ids]
            targets = torch.zeros(len(ids), max(lengths)).long()
            for row, i in enumerate(ids):
                targets[row, : lengths[row]] = torch.tensor(caption_ids[i])
            cap_emb, cap_len = txt_enc(targets, lengths)
            cap_embs[ids, : max(lengths), :] = cap_emb.numpy()
            for row, i in enumerate(ids):
                cap_lens[i] = int(cap_len[row])
    return cap_embs, cap_lens


def encode_data(model: SCAN, images: np.ndarray, caption_ids: Sequence[Sequence[int]], batch_size: int = 4):
    """``evaluation.encode_data`` on in-memory data -> img_embs (N, k, d), cap_embs, cap_lens."""
    model.val_start()
    with torch.no_grad():
        img_embs = model.img_enc(torch.from_numpy(images)).numpy()
    cap_embs, cap_lens = encode_captions(model.txt_enc, caption_ids, batch_size)
    return img_embs, cap_embs, cap_lens
