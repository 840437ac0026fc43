"""SGRAF's learned modules, with the attribute names of the ``python3.6`` branch (so checkpoints map 1:1).

* :class:`RegionAttentionPool` (their ``VisualSA``) and :class:`WordAttentionPool` (``TextSA``): the global
  image and caption vectors, an attention-weighted sum of the fragments guided by their mean.
* :class:`GraphReasoning`: one step of the similarity graph (SGR).
* :class:`AttentionFiltration`: the gate that weights the alignments (SAF).

Every ``Linear`` is Xavier-uniform initialised with a zero bias, every BatchNorm starts at weight 1, bias 0,
as in their ``init_weights``. The functions take an explicit ``train`` flag instead of reading
``self.training``: the scoring engine always computes eval-mode scores (running BatchNorm statistics, no
dropout), whatever mode the model is in, and never touches the running statistics.

Their ``VisualSA`` applies ``BatchNorm1d(36)`` to the (N, 36, d) region embeddings, so it normalises per
region *slot* (statistics over images and channels), and a model only takes images of at most that many
slots. :func:`slot_batch_norm` reproduces it and, while training on images with padded regions, keeps the
padding out of the statistics (theirs always has 36 valid regions, where both agree).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmzoo_plugins.sgraf.ops import l1norm, l2norm, masked_average, masked_softmax


def xavier_(module: nn.Module) -> None:
    """Their init: Linear ~ U(+-sqrt(6 / (in + out))), bias 0; BatchNorm weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            bound = math.sqrt(6.0) / math.sqrt(m.in_features + m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def freeze_shift(linear: nn.Linear) -> None:
    """Freeze a bias whose gradient is zero by construction (a softmax or a batch-statistics BatchNorm follows).

    A constant added to every softmax logit (of one query), or to every sample of a BatchNorm channel in
    training, cancels, so
    their training never moves these biases by gradient (their Adam sees a gradient of rounding noise only).
    They stay in the state dict and load from checkpoints: eval-mode BatchNorm uses running statistics, where
    the bias does count.
    """
    linear.bias.requires_grad_(False)


def batch_norm(bn: nn.BatchNorm1d, x: Tensor, train: bool) -> Tensor:
    """``bn(x)`` with the mode given explicitly (training updates the running statistics)."""
    if train:
        bn.num_batches_tracked.add_(1)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, train, bn.momentum, bn.eps)


def slot_batch_norm(bn: nn.BatchNorm1d, x: Tensor, mask: Tensor, train: bool) -> Tensor:
    """BatchNorm over region slots: x (N, L, d), channel = slot l < bn.num_features, stats over (N, d).

    In training, slots' statistics count only valid regions (``mask`` (N, L)); with no padding this is
    exactly ``BatchNorm1d`` on the first L slots.
    """
    length = x.shape[1]
    stats = bn.running_mean[:length], bn.running_var[:length]
    weight, bias = bn.weight[:length], bn.bias[:length]
    if not train or bool(mask.all()):
        if train:
            bn.num_batches_tracked.add_(1)
        return F.batch_norm(x, *stats, weight, bias, train, bn.momentum, bn.eps)
    valid = mask.unsqueeze(-1)
    count = mask.sum(0).to(x.dtype) * x.shape[-1]  # (L,)
    mean = x.masked_fill(~valid, 0.0).sum((0, 2)) / count.clamp_min(1)
    centred = (x - mean[:, None]).masked_fill(~valid, 0.0)
    var = centred.pow(2).sum((0, 2)) / count.clamp_min(1)
    with torch.no_grad():
        seen = count > 1
        m = bn.momentum
        stats[0][seen] = (1 - m) * stats[0][seen] + m * mean.detach()[seen]
        unbiased = var.detach() * count / (count - 1).clamp_min(1)
        stats[1][seen] = (1 - m) * stats[1][seen] + m * unbiased[seen]
        bn.num_batches_tracked.add_(1)
    return (x - mean[:, None]) / (var[:, None] + bn.eps).sqrt() * weight[:, None] + bias[:, None]


class RegionAttentionPool(nn.Module):
    """Their ``VisualSA``: regions (N, L, d) -> the global image, L2-normalised (N, d)."""

    def __init__(self, dim: int, dropout: float, regions: int) -> None:
        super().__init__()
        self.embedding_local = nn.Sequential(
            nn.Linear(dim, dim), nn.BatchNorm1d(regions), nn.Tanh(), nn.Dropout(dropout)
        )
        self.embedding_global = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.Tanh(), nn.Dropout(dropout))
        self.embedding_common = nn.Sequential(nn.Linear(dim, 1))
        xavier_(self)
        freeze_shift(self.embedding_global[0])
        freeze_shift(self.embedding_common[0])

    @property
    def regions(self) -> int:
        return self.embedding_local[1].num_features

    def pool(self, regions: Tensor, mask: Tensor, train: bool) -> Tensor:
        lin, bn, _, drop = self.embedding_local
        local = F.dropout(torch.tanh(slot_batch_norm(bn, lin(regions), mask, train)), drop.p, train)
        g_lin, g_bn, _, g_drop = self.embedding_global
        mean = masked_average(regions, mask)
        glob = F.dropout(torch.tanh(batch_norm(g_bn, g_lin(mean), train)), g_drop.p, train)
        weights = masked_softmax(self.embedding_common(local * glob.unsqueeze(1)).squeeze(-1), mask)
        return l2norm((weights.unsqueeze(-1) * regions).sum(1))


class WordAttentionPool(nn.Module):
    """Their ``TextSA``: words (N, L, d) -> the global caption, L2-normalised (N, d)."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.embedding_local = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Dropout(dropout))
        self.embedding_global = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Dropout(dropout))
        self.embedding_common = nn.Sequential(nn.Linear(dim, 1))
        xavier_(self)
        freeze_shift(self.embedding_common[0])

    def pool(self, words: Tensor, mask: Tensor, train: bool) -> Tensor:
        lin, _, drop = self.embedding_local
        local = F.dropout(torch.tanh(lin(words)), drop.p, train)
        g_lin, _, g_drop = self.embedding_global
        glob = F.dropout(torch.tanh(g_lin(masked_average(words, mask))), g_drop.p, train)
        weights = masked_softmax(self.embedding_common(local * glob.unsqueeze(1)).squeeze(-1), mask)
        return l2norm((weights.unsqueeze(-1) * words).sum(1))


class GraphReasoning(nn.Module):
    """One SGR step over the similarity nodes S (B, n, s): attention edges, aggregation, ReLU(FC)."""

    def __init__(self, sim_dim: int) -> None:
        super().__init__()
        self.graph_query_w = nn.Linear(sim_dim, sim_dim)
        self.graph_key_w = nn.Linear(sim_dim, sim_dim)
        self.sim_graph_w = nn.Linear(sim_dim, sim_dim)
        xavier_(self)
        freeze_shift(self.graph_key_w)  # x_i . b_k is the same for every key j: it cancels in the softmax

    def step(self, nodes: Tensor, node_mask: Tensor) -> Tensor:
        """Every node updated: (B, n, s) -> (B, n, s); padded nodes are never attended to."""
        edges = self.graph_query_w(nodes) @ self.graph_key_w(nodes).transpose(1, 2)
        edges = masked_softmax(edges, node_mask.unsqueeze(1))
        return torch.relu(self.sim_graph_w(edges @ nodes))

    def first_node(self, nodes: Tensor, node_mask: Tensor) -> Tensor:
        """Only node 0 (the global alignment) updated: (B, n, s) -> (B, s); what the last step needs."""
        logits = (self.graph_key_w(nodes) @ self.graph_query_w(nodes[:, 0]).unsqueeze(-1)).squeeze(-1)
        edges = masked_softmax(logits, node_mask)
        return torch.relu(self.sim_graph_w((edges.unsqueeze(1) @ nodes).squeeze(1)))

    # The engine's form of the same step. The edge logits (W_q x_i + b_q) . (W_k x_j + b_k) are, up to terms
    # that do not depend on the key j and so cancel in the softmax over j, (x_i^T W_q^T W_k + b_q^T W_k) x_j:
    # one (s x s) map per node instead of two. The last step needs node 0 alone: one vector per pair.
    def folded(self) -> tuple[Tensor, Tensor]:
        """``W_q^T W_k`` (s, s) and ``W_k^T b_q`` (s,), the folded query-key map."""
        wq, wk = self.graph_query_w.weight, self.graph_key_w.weight
        return wq.t() @ wk, wk.t() @ self.graph_query_w.bias

    def step_fast(self, nodes: Tensor, node_mask: Tensor) -> Tensor:
        """:meth:`step` with the folded query-key map (no autograd: the scoring engine)."""
        fold, shift = self.folded()
        queries = torch.addmm(shift, nodes.reshape(-1, nodes.shape[-1]), fold).view(nodes.shape)
        edges = queries @ nodes.transpose(1, 2)
        edges = masked_softmax(edges, node_mask.unsqueeze(1))
        return torch.relu_(self.sim_graph_w(edges @ nodes))

    def first_node_fast(self, nodes: Tensor, node_mask: Tensor) -> Tensor:
        """:meth:`first_node` with the folded query-key map."""
        fold, shift = self.folded()
        query = torch.addmm(shift, nodes[:, 0], fold)  # (B, s)
        edges = masked_softmax((nodes @ query.unsqueeze(-1)).squeeze(-1), node_mask)
        return torch.relu_(self.sim_graph_w((edges.unsqueeze(1) @ nodes).squeeze(1)))


class AttentionFiltration(nn.Module):
    """SAF: gate each node with sigmoid(BN(FC(node))), L1-normalise the gates, sum, L2-normalise."""

    def __init__(self, sim_dim: int) -> None:
        super().__init__()
        self.attn_sim_w = nn.Linear(sim_dim, 1)
        self.bn = nn.BatchNorm1d(1)
        xavier_(self)
        freeze_shift(self.attn_sim_w)

    def gates(self, logits: Tensor, node_mask: Tensor, train: bool) -> Tensor:
        """BatchNorm(1) on the gate logits (n_img, n_cap, n) -> sigmoid gates, 0 at padded nodes.

        Their loop calls the block once per caption on all images of the batch, so in training each
        caption's statistics cover its (n_img x valid nodes) logits and the running statistics are updated
        once per caption, in caption order; in eval mode the running statistics are one affine map.
        """
        bn = self.bn
        if not train:
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            normed = (logits - bn.running_mean) * scale + bn.bias
        else:
            valid = node_mask.expand_as(logits)
            count = valid.sum((0, 2)).to(logits.dtype)  # per caption
            mean = logits.masked_fill(~valid, 0.0).sum((0, 2)) / count
            var = (logits - mean[:, None]).masked_fill(~valid, 0.0).pow(2).sum((0, 2)) / count
            normed = (logits - mean[:, None]) / (var[:, None] + bn.eps).sqrt() * bn.weight + bn.bias
            with torch.no_grad():
                m, c = bn.momentum, len(count)
                decay = (1 - m) ** torch.arange(c - 1, -1, -1, dtype=logits.dtype, device=logits.device)
                unbiased = var * count / (count - 1).clamp_min(1)
                bn.running_mean.mul_((1 - m) ** c).add_((m * decay * mean).sum())
                bn.running_var.mul_((1 - m) ** c).add_((m * decay * unbiased).sum())
                bn.num_batches_tracked.add_(c)
        return torch.sigmoid(normed).masked_fill(~node_mask, 0.0)

    def filter(self, nodes: Tensor, node_mask: Tensor, train: bool) -> Tensor:
        """Nodes (n_img, n_cap, n, s) -> the filtered similarity vector (n_img, n_cap, s)."""
        gates = l1norm(self.gates(self.attn_sim_w(nodes).squeeze(-1), node_mask, train))
        return l2norm((gates.unsqueeze(-2) @ nodes).squeeze(-2))
