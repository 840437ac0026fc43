"""A reference of SGRAF (Paranioar/SGRAF, branch python3.6) written from a reading of its model.py and train.py.

The module classes keep their class names, attribute names and layer order, so ``state_dict()`` keys and shapes
are those of a checkpoint their ``train.py`` writes; the forward passes follow their math step by step,
including the per-caption Python loop of ``EncoderSimilarity.forward`` and the per-shard loop of
``shard_attn_scores``. Only test code uses it: mmzoo's converted models are checked against it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def l1norm(x, dim, eps=1e-8):
    return x / (x.abs().sum(dim=dim, keepdim=True) + eps)


def l2norm(x, dim=-1, eps=1e-8):
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def _xavier(linear):
    r = np.sqrt(6.0) / np.sqrt(linear.in_features + linear.out_features)
    linear.weight.data.uniform_(-r, r)
    linear.bias.data.fill_(0)


class EncoderImage(nn.Module):
    def __init__(self, img_dim, embed_size, no_imgnorm=False):
        super().__init__()
        self.embed_size = embed_size
        self.no_imgnorm = no_imgnorm
        self.fc = nn.Linear(img_dim, embed_size)
        _xavier(self.fc)

    def forward(self, images):
        emb = self.fc(images)
        return emb if self.no_imgnorm else l2norm(emb, dim=-1)


class EncoderText(nn.Module):
    def __init__(self, vocab_size, word_dim, embed_size, num_layers, use_bi_gru=False, no_txtnorm=False):
        super().__init__()
        self.embed_size = embed_size
        self.no_txtnorm = no_txtnorm
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.dropout = nn.Dropout(0.4)
        self.use_bi_gru = use_bi_gru
        self.cap_rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True, bidirectional=use_bi_gru)
        self.embed.weight.data.uniform_(-0.1, 0.1)

    def forward(self, captions, lengths):
        """captions (B, L) sorted by decreasing length (their collate_fn sorts), lengths a list."""
        emb = self.dropout(self.embed(captions))
        out, _ = self.cap_rnn(pack_padded_sequence(emb, lengths, batch_first=True))
        emb, _ = pad_packed_sequence(out, batch_first=True)
        if self.use_bi_gru:
            half = emb.size(2) // 2
            emb = (emb[:, :, :half] + emb[:, :, half:]) / 2
        return emb if self.no_txtnorm else l2norm(emb, dim=-1)


class _SelfAttention(nn.Module):
    def _init(self):
        for seq in self.children():
            for m in seq:
                if isinstance(m, nn.Linear):
                    _xavier(m)
                elif isinstance(m, nn.BatchNorm1d):
                    m.weight.data.fill_(1)
                    m.bias.data.zero_()

    def forward(self, local, raw_global):
        l_emb = self.embedding_local(local)
        g_emb = self.embedding_global(raw_global).unsqueeze(1).repeat(1, l_emb.size(1), 1)
        weights = torch.softmax(self.embedding_common(l_emb * g_emb).squeeze(2), dim=1)
        return l2norm((weights.unsqueeze(2) * local).sum(dim=1), dim=-1)


class VisualSA(_SelfAttention):
    def __init__(self, embed_dim, dropout_rate, num_region):
        super().__init__()
        self.embedding_local = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.BatchNorm1d(num_region), nn.Tanh(), nn.Dropout(dropout_rate)
        )
        self.embedding_global = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.BatchNorm1d(embed_dim), nn.Tanh(), nn.Dropout(dropout_rate)
        )
        self.embedding_common = nn.Sequential(nn.Linear(embed_dim, 1))
        self._init()


class TextSA(_SelfAttention):
    def __init__(self, embed_dim, dropout_rate):
        super().__init__()
        self.embedding_local = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(), nn.Dropout(dropout_rate))
        self.embedding_global = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(), nn.Dropout(dropout_rate))
        self.embedding_common = nn.Sequential(nn.Linear(embed_dim, 1))
        self._init()


class GraphReasoning(nn.Module):
    def __init__(self, sim_dim):
        super().__init__()
        self.graph_query_w = nn.Linear(sim_dim, sim_dim)
        self.graph_key_w = nn.Linear(sim_dim, sim_dim)
        self.sim_graph_w = nn.Linear(sim_dim, sim_dim)
        self.relu = nn.ReLU()
        for m in (self.graph_query_w, self.graph_key_w, self.sim_graph_w):
            _xavier(m)

    def forward(self, sim_emb):
        query, key = self.graph_query_w(sim_emb), self.graph_key_w(sim_emb)
        edge = torch.softmax(torch.bmm(query, key.permute(0, 2, 1)), dim=-1)
        return self.relu(self.sim_graph_w(torch.bmm(edge, sim_emb)))


class AttentionFiltration(nn.Module):
    def __init__(self, sim_dim):
        super().__init__()
        self.attn_sim_w = nn.Linear(sim_dim, 1)
        self.bn = nn.BatchNorm1d(1)
        _xavier(self.attn_sim_w)
        self.bn.weight.data.fill_(1)
        self.bn.bias.data.zero_()

    def forward(self, sim_emb):
        gates = l1norm(torch.sigmoid(self.bn(self.attn_sim_w(sim_emb).permute(0, 2, 1))), dim=-1)
        return l2norm(torch.matmul(gates, sim_emb).squeeze(1), dim=-1)


def SCAN_attention(query, context, smooth, eps=1e-8):
    """query (n, Lq, d) words, context (n, Ls, d) regions -> attended regions per word (n, Lq, d)."""
    attn = torch.bmm(context, query.transpose(1, 2))  # (n, Ls, Lq)
    attn = l2norm(F.leaky_relu(attn, 0.1), 2)
    attn = torch.softmax(attn.transpose(1, 2) * smooth, dim=2)  # (n, Lq, Ls)
    weighted = torch.bmm(context.transpose(1, 2), attn.transpose(1, 2)).transpose(1, 2)
    return l2norm(weighted, dim=-1)


class EncoderSimilarity(nn.Module):
    def __init__(self, embed_size, sim_dim, module_name="AVE", sgr_step=3):
        super().__init__()
        self.module_name = module_name
        self.v_global_w = VisualSA(embed_size, 0.4, 36)
        self.t_global_w = TextSA(embed_size, 0.4)
        self.sim_tranloc_w = nn.Linear(embed_size, sim_dim)
        self.sim_tranglo_w = nn.Linear(embed_size, sim_dim)
        self.sim_eval_w = nn.Linear(sim_dim, 1)
        if module_name == "SGR":
            self.SGR_module = nn.ModuleList([GraphReasoning(sim_dim) for _ in range(sgr_step)])
        elif module_name == "SAF":
            self.SAF_module = AttentionFiltration(sim_dim)
        else:
            raise ValueError("module_name must be SGR or SAF")
        for m in (self.sim_tranloc_w, self.sim_tranglo_w, self.sim_eval_w):
            _xavier(m)

    def forward(self, img_emb, cap_emb, cap_lens):
        n_image = img_emb.size(0)
        img_glo = self.v_global_w(img_emb, img_emb.mean(1))
        columns = []
        for i in range(cap_emb.size(0)):
            cap_i = cap_emb[i, : cap_lens[i], :].unsqueeze(0)
            cap_i_expand = cap_i.repeat(n_image, 1, 1)
            cap_glo_i = self.t_global_w(cap_i, cap_i.mean(1))
            context = SCAN_attention(cap_i_expand, img_emb, smooth=9.0)
            sim_loc = l2norm(self.sim_tranloc_w((context - cap_i_expand).pow(2)), dim=-1)
            sim_glo = l2norm(self.sim_tranglo_w((img_glo - cap_glo_i).pow(2)), dim=-1)
            sim_emb = torch.cat([sim_glo.unsqueeze(1), sim_loc], 1)
            if self.module_name == "SGR":
                for module in self.SGR_module:
                    sim_emb = module(sim_emb)
                sim_vec = sim_emb[:, 0, :]
            else:
                sim_vec = self.SAF_module(sim_emb)
            columns.append(torch.sigmoid(self.sim_eval_w(sim_vec)))
        return torch.cat(columns, 1)


class ContrastiveLoss(nn.Module):
    def __init__(self, margin=0.0, max_violation=False):
        super().__init__()
        self.margin, self.max_violation = margin, max_violation

    def forward(self, scores):
        diagonal = scores.diag().view(scores.size(0), 1)
        cost_s = (self.margin + scores - diagonal.expand_as(scores)).clamp(min=0)
        cost_im = (self.margin + scores - diagonal.t().expand_as(scores)).clamp(min=0)
        eye = torch.eye(scores.size(0)) > 0.5
        cost_s, cost_im = cost_s.masked_fill(eye, 0), cost_im.masked_fill(eye, 0)
        if self.max_violation:
            cost_s, cost_im = cost_s.max(1)[0], cost_im.max(0)[0]
        return cost_s.sum() + cost_im.sum()


class SGRAF:
    """Their wrapper: three modules, ``forward_emb`` and ``forward_sim``, no optimiser (tests need none)."""

    def __init__(self, opt):
        self.img_enc = EncoderImage(opt.img_dim, opt.embed_size, no_imgnorm=opt.no_imgnorm)
        self.txt_enc = EncoderText(
            opt.vocab_size,
            opt.word_dim,
            opt.embed_size,
            opt.num_layers,
            use_bi_gru=opt.bi_gru,
            no_txtnorm=opt.no_txtnorm,
        )
        self.sim_enc = EncoderSimilarity(opt.embed_size, opt.sim_dim, opt.module_name, opt.sgr_step)
        self.criterion = ContrastiveLoss(margin=opt.margin, max_violation=opt.max_violation)

    def state_dict(self):
        return [self.img_enc.state_dict(), self.txt_enc.state_dict(), self.sim_enc.state_dict()]

    def train_start(self):
        for m in (self.img_enc, self.txt_enc, self.sim_enc):
            m.train()

    def val_start(self):
        for m in (self.img_enc, self.txt_enc, self.sim_enc):
            m.eval()

    def forward_emb(self, images, captions, lengths):
        return self.img_enc(images), self.txt_enc(captions, lengths), lengths

    def forward_sim(self, img_embs, cap_embs, cap_lens):
        return self.sim_enc(img_embs, cap_embs, cap_lens)


# -- their opts, collate, evaluation --------------------------------------------------------------------------
def default_opt(**changes) -> argparse.Namespace:
    """Every option of their opts.py with its default, plus the vocab_size train.py adds."""
    opt = dict(
        data_path="/apdcephfs/share_1313228/home/haiwendiao",
        data_name="f30k_precomp",
        vocab_path="/apdcephfs/share_1313228/home/haiwendiao/SGRAF-master/vocab/",
        model_name="/apdcephfs/share_1313228/home/haiwendiao/SGRAF-master/runs/f30k_SGR/checkpoint",
        logger_name="/apdcephfs/share_1313228/home/haiwendiao/SGRAF-master/runs/f30k_SGR/log",
        batch_size=128,
        num_epochs=40,
        lr_update=30,
        learning_rate=0.0002,
        workers=10,
        log_step=10,
        val_step=1000,
        grad_clip=2.0,
        margin=0.2,
        max_violation=True,
        img_dim=2048,
        word_dim=300,
        embed_size=1024,
        sim_dim=256,
        num_layers=1,
        bi_gru=True,
        no_imgnorm=False,
        no_txtnorm=False,
        module_name="SGR",
        sgr_step=3,
        vocab_size=8481,
    )
    opt.update(changes)
    return argparse.Namespace(**opt)


def save_checkpoint(model: SGRAF, opt: argparse.Namespace, path: str | Path, epoch: int = 3, eiters: int = 1234):
    """What their train.py writes after an epoch (save_checkpoint -> torch.save)."""
    torch.save({"epoch": epoch, "model": model.state_dict(), "best_rsum": 480.5, "opt": opt, "Eiters": eiters}, path)


def collate(images: torch.Tensor, id_lists: list[list[int]]):
    """Their collate_fn: sort by caption length (longest first), pad with 0; returns the order too."""
    order = sorted(range(len(id_lists)), key=lambda i: len(id_lists[i]), reverse=True)
    lengths = [len(id_lists[i]) for i in order]
    targets = torch.zeros(len(order), max(lengths)).long()
    for row, i in enumerate(order):
        targets[row, : lengths[row]] = torch.tensor(id_lists[i])
    return images[order], targets, lengths, order


def encode_data(model: SGRAF, images: torch.Tensor, id_lists: list[list[int]], batch_size: int = 100):
    """Their encode_data: embeddings of every image and caption in dataset order, captions padded to the max."""
    model.val_start()
    n = len(id_lists)
    max_len = max(len(i) for i in id_lists)
    img_embs, cap_embs, cap_lens = None, None, [0] * n
    for start in range(0, n, batch_size):
        ids = list(range(start, min(start + batch_size, n)))
        ims, caps, lengths, order = collate(images[ids], [id_lists[i] for i in ids])
        with torch.no_grad():
            img_emb, cap_emb, _ = model.forward_emb(ims, caps, lengths)
        if img_embs is None:
            img_embs = np.zeros((n, img_emb.size(1), img_emb.size(2)))
            cap_embs = np.zeros((n, max_len, cap_emb.size(2)))
        rows = [ids[o] for o in order]
        img_embs[rows] = img_emb.numpy()
        cap_embs[rows, : max(lengths), :] = cap_emb.numpy()
        for j, nid in enumerate(rows):
            cap_lens[nid] = lengths[j]
    return img_embs, cap_embs, cap_lens


def shard_attn_scores(model: SGRAF, img_embs, cap_embs, cap_lens, shard_size: int = 100) -> np.ndarray:
    """Their shard_attn_scores (on the CPU): forward_sim on 100 x 100 shards."""
    sims = np.zeros((len(img_embs), len(cap_embs)))
    for i in range(0, len(img_embs), shard_size):
        for j in range(0, len(cap_embs), shard_size):
            with torch.no_grad():
                im = torch.from_numpy(img_embs[i : i + shard_size]).float()
                ca = torch.from_numpy(cap_embs[j : j + shard_size]).float()
                sim = model.forward_sim(im, ca, cap_lens[j : j + shard_size])
            sims[i : i + shard_size, j : j + shard_size] = sim.numpy()
    return sims
