"""Text fingerprints for the data audit: normalized text, word hashes, MinHash signatures and near-duplicate clusters.

Near duplicates are found the usual scalable way (Broder 1997; Leskovec, Rajaraman, Ullman, Mining of Massive
Datasets, ch. 3): each text becomes the set of its word 3-shingles; `N_PERM` independent 64-bit hashes of the set
each keep their minimum (P[two minima agree] = Jaccard similarity); signatures are cut into `BANDS` bands, texts
sharing a band are candidates, and a candidate is kept when the share of agreeing minima (the Jaccard estimate)
reaches the threshold. Everything is vectorized numpy over all words of all texts at once (polars splits and hashes
the words), so 60,000 pairs take seconds, not the O(n^2) of comparing every pair.

The hashes (polars' `hash` then splitmix64) are stable within a process, which is all the audit needs: nothing
hashed here is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

N_PERM = 16  # minima per signature: the Jaccard estimate's standard error is sqrt(J(1-J)/16), 0.1 at J = 0.8
BANDS = 8  # bands of 2 rows: a pair at Jaccard 0.8 becomes a candidate with probability 1 - (1 - 0.8^2)^8 > 0.999
SHINGLE = 3  # words per shingle
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_SEEDS = np.random.default_rng(20241008).integers(1, 2**63, size=N_PERM, dtype=np.uint64)
_MULT = np.random.default_rng(2410).integers(1, 2**63, size=N_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_EMPTY = np.iinfo(np.uint64).max


def mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijective 64-bit mix (uint64 arithmetic wraps)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def normalize(expr: pl.Expr) -> pl.Expr:
    """Lower case, every run of characters other than letters and digits one space, trimmed: 'Yes!' == 'yes'."""
    return expr.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()


@dataclass(frozen=True)
class Words:
    """The words of D normalized texts: one flat array of word hashes and where each text's words start."""

    hashes: np.ndarray  # (N,) uint64
    starts: np.ndarray  # (D,) int64
    lengths: np.ndarray  # (D,) int64, 0 for an empty text

    def of(self, i: int) -> list[int]:
        return self.hashes[self.starts[i]:self.starts[i] + self.lengths[i]].tolist()


def words(normalized: pl.Series) -> Words:
    """Word hashes of normalized texts (single spaces, see `normalize`)."""
    lists = normalized.fill_null("").str.split(" ")
    lengths = np.where(normalized.fill_null("").to_numpy() == "", 0, lists.list.len().to_numpy()).astype(np.int64)
    flat = lists.explode().filter(pl.Series(np.repeat(lengths > 0, np.maximum(lengths, 1))))
    hashes = mix(flat.hash(seed=7).to_numpy().astype(np.uint64))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return Words(hashes, starts, lengths)


def signatures(w: Words, n_perm: int = N_PERM, k: int = SHINGLE) -> np.ndarray:
    """(D, n_perm) uint64 MinHash signatures of each text's word k-shingles (a text shorter than k words is one
    shingle; an empty text gets the all-max signature, so empty texts match each other and nothing else)."""
    n_docs, n = len(w.lengths), len(w.hashes)
    doc = np.repeat(np.arange(n_docs), w.lengths)  # (N,)
    pos = np.arange(n) - w.starts[doc]
    shingle = w.hashes.copy()
    for j in range(1, k):  # shingle = sum_j h[i + j] * odd_j (mod 2^64) over the words inside the text
        nxt = np.zeros(n, np.uint64)
        nxt[:-j] = w.hashes[j:]
        nxt[pos + j >= w.lengths[doc]] = 0
        shingle = shingle * _M1 + nxt
    keep = (pos + k - 1 < w.lengths[doc]) | (pos == 0)
    values, kept_doc = shingle[keep], doc[keep]
    counts = np.bincount(kept_doc, minlength=n_docs)
    has = counts > 0
    seg = np.concatenate([[0], np.cumsum(counts)[:-1]])[has]
    sig = np.full((n_docs, n_perm), _EMPTY, np.uint64)
    buf = np.empty_like(values)
    for p in range(n_perm):  # multiply-add hashing of already-mixed values: the minimum is decided by the high bits,
        if len(values):      # which the multiply-shift family mixes well (Dietzfelbinger et al. 1997)
            np.multiply(values, _MULT[p], out=buf)
            np.add(buf, _SEEDS[p], out=buf)
            sig[has, p] = np.minimum.reduceat(buf, seg)
    return sig


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a sort and a comparison: numpy's hash-based `unique` is slower on uint64 hashes)."""
    v = np.sort(values)
    return v[np.concatenate([[True], v[1:] != v[:-1]])] if len(v) else v


def first_of(labels: np.ndarray) -> np.ndarray:
    """For each row, whether it is the first row (in order) with its label."""
    order = np.argsort(labels, kind="stable")
    s = labels[order]
    out = np.zeros(len(labels), bool)
    out[order[np.concatenate([[True], s[1:] != s[:-1]])] if len(s) else order] = True
    return out


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard estimate of two signature arrays (share of agreeing minima)."""
    return (a == b).mean(axis=1)


def clusters(sig: np.ndarray, threshold: float = 0.8, bands: int = BANDS) -> np.ndarray:
    """(D,) cluster label per text: texts linked by an estimated Jaccard >= threshold share a label (connected
    components of the candidate graph; each band links a bucket's members to its first member, so at most D edges
    per band are checked)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_docs = len(sig)
    if n_docs == 0:
        return np.zeros(0, np.int64)
    rows = sig.shape[1] // bands
    src, dst = [], []
    idx = np.arange(n_docs)
    for b in range(bands):
        key = sig[:, b * rows].copy()
        for r in range(1, rows):
            key = mix(key ^ sig[:, b * rows + r] ^ np.uint64(r))
        order = np.argsort(key, kind="stable")
        ks = key[order]
        new = np.concatenate([[True], ks[1:] != ks[:-1]])
        first = order[np.maximum.accumulate(np.where(new, idx, 0))]
        src.append(first[~new])
        dst.append(order[~new])
    src, dst = np.concatenate(src), np.concatenate(dst)
    if len(src):
        pair = distinct(src.astype(np.int64) * n_docs + dst)
        src, dst = pair // n_docs, pair % n_docs
        ok = similarity(sig[src], sig[dst]) >= threshold
        src, dst = src[ok], dst[ok]
    graph = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n_docs, n_docs))
    return connected_components(graph, directed=False)[1].astype(np.int64)


@dataclass(frozen=True)
class PairPrints:
    """Every fingerprint the audit's metrics share, computed once over a pair table (prompt, chosen, rejected)."""

    prompt: np.ndarray  # (n,) uint64 hash of the normalized prompt
    chosen: np.ndarray  # (n,) uint64 hash of the normalized chosen answer
    rejected: np.ndarray  # (n,) uint64
    chosen_words: Words
    rejected_words: Words
    chosen_sig: np.ndarray  # (n, N_PERM) MinHash of the chosen answer
    rejected_sig: np.ndarray
    pair_sig: np.ndarray  # MinHash of the union of the three shingle sets (near-duplicate pairs)


def pair_prints(df: pl.DataFrame) -> PairPrints:
    """Normalize, hash and sign the texts of a pair table (columns prompt, chosen, rejected)."""
    norm = df.select(normalize(pl.col("prompt")).alias("p"), normalize(pl.col("chosen")).alias("c"),
                     normalize(pl.col("rejected")).alias("r"))
    cw, rw = words(norm["c"]), words(norm["r"])
    cs, rs = signatures(cw), signatures(rw)
    # MinHash of the union of the three shingle sets, each tagged with its side (the rejected minima through a
    # bijective mix, as if hashed apart), so a pair and its swap (a contradiction) are not near duplicates
    pair_sig = np.minimum(np.minimum(signatures(words(norm["p"])), cs), mix(rs ^ np.uint64(0x5DEECE66D)))
    return PairPrints(*(mix(norm[k].hash(seed=11).to_numpy().astype(np.uint64)) for k in ("p", "c", "r")),
                      cw, rw, cs, rs, pair_sig)
