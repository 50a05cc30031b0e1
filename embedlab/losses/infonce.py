"""InfoNCE with in-batch and hard negatives, optional focal reweighting and hard-negative mixing."""

from __future__ import annotations

import torch

from embedlab.errors import ConfigError
from embedlab.losses.base import Embeddings, Loss, LossOutput, check_similarity, positive_temperature, scoring_vectors
from embedlab.losses.hn_mixing import HardNegativeMixing
from embedlab.losses.settings import InfoNCESettings


class InfoNCE(Loss):
    r"""Contrastive loss over an in-batch document pool (van den Oord et al. 2018, "CPC"; DPR, Karpukhin et al. 2020).

    Inputs: ``query`` [B, D], ``positive`` [B, D], optional ``negatives`` [B, K, D] and ``document_mask``.
    The pool is every positive and every hard negative of the batch (B(1+K) documents). With
    s_ij = sim(q_i, d_j) / τ (``similarity`` cosine, the default, or dot) and p_i = softmax_j(s_ij) at the query's
    own positive j = i:

        L = −(1/B) Σ_i w_i · log p_i,    w_i = (1 − p_i)^γ

    γ = 0 is plain InfoNCE (w_i = 1); γ > 0 is the focal-style reweighting of KaLM-Embedding-V2 (Zhao et al. 2025),
    after the focal loss of Lin et al. 2017: examples the model already ranks well (p_i → 1) count less. The weight
    is not detached, as in the focal loss itself.

    Options: ``symmetric`` adds the document→query direction (positives against all queries) and averages the two;
    ``query_query`` / ``doc_doc`` add the other queries / other positives as extra negatives (GTE, Li et al. 2023);
    ``mixing`` appends synthetic hard negatives (MoCHi, see `HardNegativeMixing`; unit vectors, so cosine only).
    In-batch documents masked off by ``document_mask`` (the same document as the query's positive) are never
    negatives. Logged: ``accuracy`` (the positive is the query's top real in-batch document; extra negatives and
    synthetic ones are left out so the figure compares across options), ``p_positive``, ``positive_rank`` (the
    positive's mean 1-based rank among every column of the softmax, synthetic ones included) and, with mixing,
    ``synthetic_outranks_pos`` (the share of queries whose positive some synthetic negative outscores) and
    ``synthetic_rank`` (the best synthetic's mean rank among the real documents, positive included, over the
    queries with synthetic negatives): the training log's evidence of what the synthetic block does.
    """

    requires = frozenset({"query", "positive"})
    settings = InfoNCESettings

    def __init__(
        self,
        temperature: float = InfoNCESettings.temperature,
        gamma: float = InfoNCESettings.gamma,
        symmetric: bool = InfoNCESettings.symmetric,
        query_query: bool = InfoNCESettings.query_query,
        doc_doc: bool = InfoNCESettings.doc_doc,
        mixing: HardNegativeMixing | None = None,
        similarity: str = InfoNCESettings.similarity,
    ) -> None:
        super().__init__()
        self.similarity = check_similarity(similarity)
        if mixing is not None and similarity != "cosine":
            raise ConfigError("hard-negative mixing builds unit-norm negatives (MoCHi): it needs similarity cosine")
        if gamma < 0:
            raise ConfigError(f"focal gamma must be >= 0, got {gamma}")
        self.temperature = positive_temperature(temperature)
        self.gamma, self.symmetric, self.query_query, self.doc_doc = float(gamma), symmetric, query_query, doc_doc
        self.mixing = mixing

    def forward(self, emb: Embeddings) -> LossOutput:
        self.check_inputs(emb)
        q = scoring_vectors(emb.query, self.similarity)
        docs = scoring_vectors(emb.documents(), self.similarity)
        b = q.shape[0]
        scores = q @ docs.T  # [B, N] cosines (or dot products)
        valid = _valid_mask(emb.document_mask, b, docs.shape[0], q.device)
        scores = scores.masked_fill(~valid, float("-inf"))
        blocks = [scores]
        idx = torch.arange(b, device=q.device)
        # Top-1 over the real documents only, comparable across options: extra blocks (other queries, synthetic
        # negatives) would otherwise count in it.
        logs = {"accuracy": (scores.detach().argmax(1) == idx).float().mean().item()}
        if self.query_query:
            blocks.append((q @ q.T).masked_fill(torch.eye(b, dtype=torch.bool, device=q.device), float("-inf")))
        if self.doc_doc:
            p = docs[:b]
            same = ~valid[:, :b] | torch.eye(b, dtype=torch.bool, device=q.device)
            blocks.append((p @ p.T).masked_fill(same, float("-inf")))
        if self.mixing is not None:
            synthetic = self.mixing(q, docs, scores)  # [B, S, D], detached
            mixed = torch.einsum("bd,bsd->bs", q, synthetic)
            # A zero vector is no synthetic negative: a query with nothing to mix from (its in-batch documents all
            # masked, or its positive alone), or a capped query mix with no room below the positive.
            mixed = mixed.masked_fill(synthetic.abs().amax(dim=-1) == 0, float("-inf"))
            blocks.append(mixed)
            # Best synthetic per query (−inf where nothing was mixed): how many queries it beats the positive for
            # (the share; none when nothing was mixed), and its rank among the real documents where there is one.
            best = mixed.detach().amax(dim=1) if mixed.shape[1] else scores.new_full((b,), float("-inf"))
            logs["synthetic_outranks_pos"] = (best > scores.detach()[idx, idx]).float().mean().item()
            rank = 1 + (scores.detach() > best[:, None]).sum(dim=1)
            if torch.isfinite(best).any():
                logs["synthetic_rank"] = rank[torch.isfinite(best)].float().mean().item()
        logits = torch.cat(blocks, dim=1) / self.temperature
        above = logits.detach() > logits.detach()[idx, idx].unsqueeze(1)  # columns outscoring the positive
        logs["positive_rank"] = (1 + above.sum(dim=1)).float().mean().item()
        loss, log_p = self._weighted_nll(logits)
        logs["p_positive"] = log_p.exp().mean().item()
        if self.symmetric:
            back = (docs[:b] @ q.T).masked_fill(~valid[:, :b].T, float("-inf")) / self.temperature
            loss_back, _ = self._weighted_nll(back)
            logs["loss_doc_to_query"] = loss_back.item()
            loss = (loss + loss_back) / 2
        return LossOutput(loss, logs)

    def _weighted_nll(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of −w_i log p_i with the target of row i in column i; returns (loss, log p_i)."""
        idx = torch.arange(logits.shape[0], device=logits.device)
        log_p = logits.log_softmax(dim=1)[idx, idx]
        # 1 − p as −expm1(log p): exact where p is near 1, where 1 − exp(log p) rounds to 0. The base is floored at
        # the smallest normal float: for γ < 1 the slope γ·x^(γ−1) of x^γ is infinite at x = 0, and autograd times a
        # saturated softmax's zero slope gives NaN. The floor changes the loss by under tiny^γ·|log p|, i.e. nothing.
        base = (-torch.expm1(log_p)).clamp(min=torch.finfo(log_p.dtype).tiny)
        weight = base**self.gamma  # γ = 0: x^0 = 1 exactly, plain InfoNCE to the bit through this same formula
        return -(weight * log_p).mean(), log_p


def _valid_mask(mask: torch.Tensor | None, b: int, n: int, device: torch.device) -> torch.Tensor:
    """Which pool documents may serve as query i's negatives; its own positive (column i) always stays."""
    valid = torch.ones(b, n, dtype=torch.bool, device=device) if mask is None else mask.to(device).bool().clone()
    if valid.shape != (b, n):
        raise ConfigError(f"document_mask has shape {tuple(valid.shape)}, expected {(b, n)}")
    valid[torch.arange(b), torch.arange(b)] = True
    return valid
