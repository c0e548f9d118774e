"""Image similarity: signatures, distances, near-duplicate pairs and groups (used by grouped folds and the
audit), cached by the images' content.

Image signature
    Each image is converted to grayscale, area-averaged to a 16x16 thumbnail and made zero-mean and
    unit-norm (256 dims; brightness/contrast invariant). Distance = 1 - cosine = 1 - dot product of
    two signatures, in [0, 2]: ~1 for unrelated natural images, 0 for copies. Exact duplicates are
    found separately, from the sha1 of the file bytes. A constant (blank) image has a zero signature:
    distance 1 to everything, so blanks are only caught as exact duplicates.

Default threshold (DEFAULT_THRESHOLD = 0.005), measured on the Alzheimer MRI set (5,121 train,
1,279 test; decoded to 64x64 by competition.data, area filter):
    - nearest train image of a test image: two clean modes, 200 test images (15.6%) between 0.0015
      and 0.0045, then *none* between 0.0045 and 0.006, the rest from 0.006 up (median 0.022);
    - nearest other train image of a train image: median 0.0025, 99% <= 0.0044, max 0.0063, always
      of the same label;
    - the closest pair with *different* labels (surely different brains) is at 0.0095
      (1% of cross-label nearest neighbours below 0.0118); random pairs: median 0.068.
    0.005 lies in the empty gap and at half the closest cross-label pair: no group mixes labels and
    the 5,121 slices fall into 228 groups of at most 26 images, i.e. roughly one group per brain.
    Because every slice looks like a centred brain on black, distances on MRI sets are small; for
    natural photographs 0.005 only joins near-identical copies (resized, re-compressed). Subtracting
    the mean training thumbnail first was tried and rejected: it rescales each pair by how far its
    images are from the mean and blurs the gap (train neighbours up to 0.089 against 0.092 across labels).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from competition.data.cache import cache_dir
from competition.errors import CompetitionError
from competition.files import read_cached_npy, write_npy

DEFAULT_THRESHOLD = 0.005
THUMB = 16  # signature thumbnail side: 256 dims
LOAD_SIZE = (64, 64)  # size the images are decoded to for signatures (cached by competition.data.cache)
SIGNATURE_VERSION = "v1"
SNAP = 1e-6  # distances below this are float32 rounding of identical signatures: 0
BLOCK = 1024  # rows per block in the pairwise searches: BLOCK x n float32 in memory


# --------------------------------------------------------------------------------------------------
# signatures and distances


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of an area (box) resize along one axis."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(lo + 1, edges[1:, None]) - np.maximum(lo, edges[:-1, None]), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def grayscale(images: np.ndarray) -> np.ndarray:
    """float32 (n, h, w): the channel mean of images (n, h, w[, c]); CompetitionError for other shapes."""
    images = np.asarray(images)
    if images.ndim == 4:
        return images.astype(np.float32).mean(axis=3)
    if images.ndim == 3:
        return images.astype(np.float32)
    raise CompetitionError(f"images: expected shape (n, h, w[, channels]), got {images.shape}")


def thumbnails(images: np.ndarray, size: int = THUMB) -> np.ndarray:
    """(n, size*size) float32: grayscale area-resized thumbnails, each zero-mean and unit-norm."""
    gray = grayscale(images)
    n, h, w = gray.shape
    small = area_matrix(h, size) @ gray @ area_matrix(w, size).T  # (n, size, size)
    flat = small.reshape(n, size * size)
    return _unit(flat - flat.mean(axis=1, keepdims=True))


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-8)).astype(np.float32)


def signatures(images: np.ndarray) -> np.ndarray:
    """(n, 256) float32 unit vectors (uint8 images (n, h, w[, c]) of any size); distance = 1 - dot."""
    return thumbnails(images)


def _distance(similarity: np.ndarray) -> np.ndarray:
    """1 - similarity in [0, 2]; float32 rounding below SNAP counts as 0 (identical images)."""
    d = np.clip(1.0 - np.asarray(similarity, dtype=np.float64), 0.0, 2.0)
    return np.where(d < SNAP, 0.0, d)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signature distance (1 - cosine) between matching rows of a and b."""
    return _distance(np.sum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64), axis=-1))


@dataclass
class Scan:
    """What one blockwise pass over all pairs (rows of a against rows of b) found."""

    i: np.ndarray  # pairs with distance <= threshold: row of a, row of b (i < j within one set), distance
    j: np.ndarray
    d: np.ndarray
    nearest_index: np.ndarray  # per row of a: nearest row of b (-1 if none), its distance (inf if none)
    nearest_distance: np.ndarray
    fold_nearest: list[np.ndarray]  # per fold assignment: distance to the nearest row in another fold


def scan(
    a: np.ndarray,
    b: np.ndarray | None = None,
    *,
    threshold: float | None = None,
    fold_sets: Sequence[np.ndarray] = (),
) -> Scan:
    """One pass of blockwise matrix products (BLOCK rows of a at a time) for everything at once.

    b None: a against itself (self excluded, pairs i < j); fold_sets only then (assignments of a's rows).
    """
    with one_blas_thread():
        return _scan(np.asarray(a, dtype=np.float32), None if b is None else np.asarray(b, dtype=np.float32),
                     threshold, [np.asarray(f) for f in fold_sets])


def one_blas_thread() -> Any:
    """Small matrix products and solves run far faster on one BLAS thread when the cores are shared
    (measured 5x on the pair search, 70x on a 274x274 solve with the machine loaded)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _scan(a: np.ndarray, b: np.ndarray | None, threshold: float | None, fold_sets: list[np.ndarray]) -> Scan:
    same = b is None
    other = a if b is None else b
    n = len(a)
    found_i, found_j, found_d = [], [], []
    index = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.inf, dtype=np.float64)
    fold_nearest = [np.full(n, np.inf, dtype=np.float64) for _ in fold_sets]
    cols = np.arange(len(other))
    for start in range(0, n if len(other) else 0, BLOCK):
        sim = a[start : start + BLOCK] @ other.T
        rows = np.arange(len(sim))
        if same:
            sim[rows, rows + start] = -np.inf
        best = sim.argmax(axis=1)
        top = sim[rows, best]
        ok = np.isfinite(top)
        index[start : start + len(sim)] = np.where(ok, best, -1)
        dist[start : start + len(sim)] = np.where(ok, _distance(top), np.inf)
        if threshold is not None:
            keep = sim >= 1.0 - max(threshold, SNAP)
            if same:
                keep &= cols[None, :] > (rows + start)[:, None]
            i, j = np.nonzero(keep)
            found_i.append((i + start).astype(np.int32))
            found_j.append(j.astype(np.int32))
            found_d.append(_distance(sim[i, j]).astype(np.float32))
        for folds, out in zip(fold_sets, fold_nearest):
            masked = np.where(folds[start : start + len(sim), None] == folds[None, :], -np.inf, sim)
            top = masked.max(axis=1)
            out[start : start + len(sim)] = np.where(np.isfinite(top), _distance(top), np.inf)
    if found_i:
        i, j, d = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)
        order = np.lexsort((j, i, d))
        i, j, d = i[order], j[order], d[order]
    else:
        i, j, d = np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    return Scan(i, j, d, index, dist, fold_nearest)


def near_pairs(
    a: np.ndarray, b: np.ndarray | None = None, threshold: float = DEFAULT_THRESHOLD
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j, distance) with distance <= threshold, closest first.

    With b None: pairs within a, i < j. Else i indexes a, j indexes b.
    """
    found = scan(a, b, threshold=threshold)
    return found.i, found.j, found.d


def nearest(a: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(index, distance) of the nearest row of b (b None: the nearest *other* row of a) for each row of a."""
    found = scan(a, b)
    return found.nearest_index, found.nearest_distance


def nearest_in_other_fold(signatures: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Per image: distance to the nearest image of another fold (its nearest *training* image)."""
    return scan(signatures, fold_sets=[folds]).fold_nearest[0]


def near_duplicate_groups(signatures: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Group id per image: connected components of the pairs with distance <= threshold."""
    i, j, _ = near_pairs(signatures, None, threshold)
    return connected_groups(len(signatures), i, j)


def groups_at(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray, threshold: float) -> np.ndarray:
    """int64 (n,) group id per item: connected components of the pairs (i, j) at distance d <= threshold.

    One pair search at the largest threshold (near_pairs) serves every lower one: the folds' threshold search
    (competition.folds.choose_scheme) regroups from it without searching again."""
    keep = np.asarray(d) <= threshold
    return connected_groups(n, np.asarray(i)[keep], np.asarray(j)[keep])


def connected_groups(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """int64 (n,) group id per item: connected components of the graph with edges (i[k], j[k])
    (scipy.sparse.csgraph.connected_components)."""
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def leak_share(signatures: np.ndarray, folds: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Share of images whose validation fold leaks: a near-duplicate (distance <= threshold) lies in
    another fold, i.e. in the training data of the model that validates it."""
    if len(signatures) == 0:
        return 0.0
    return float(np.mean(nearest_in_other_fold(signatures, folds) <= threshold))


# --------------------------------------------------------------------------------------------------
# chains: how images connect through near twins (slices of one brain, frames of one video)

CHAIN_NEIGHBOURS = 10  # nearest neighbours per image in the graph whose minimum spanning tree gives the chains


@dataclass
class ChainTree:
    """The minimum spanning tree of a set of images' signatures (rows of `n` images), its edges sorted by
    distance: the minimax ("chain") distance between two images, the largest step on the best path of near
    twins from one to the other, is the largest edge on their tree path (single linkage)."""

    n: int
    i: np.ndarray  # int64 (n - components,) edge ends, ascending distance
    j: np.ndarray
    d: np.ndarray  # float64 edge distances (1 - cosine)


def chain_tree(signatures: np.ndarray, neighbours: int = CHAIN_NEIGHBOURS) -> ChainTree:
    """ChainTree of (n, d) unit signatures, from the graph of each image's `neighbours` nearest others
    (scipy.sparse.csgraph.minimum_spanning_tree; the k-nearest-neighbour graph holds the exact tree in practice:
    a tree edge is nearly always among an end's nearest neighbours). About 1 s for 6,400 images."""
    from scipy.sparse.csgraph import minimum_spanning_tree

    sig = np.asarray(signatures, dtype=np.float32)
    n = len(sig)
    k = min(neighbours, n - 1)
    if k < 1:
        return ChainTree(n, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    rows, cols, vals = [], [], []
    with one_blas_thread():
        for start in range(0, n, BLOCK):
            sim = sig[start : start + BLOCK] @ sig.T
            r = np.arange(len(sim))
            sim[r, r + start] = -np.inf
            near = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            # a zero distance would be no edge in a sparse graph: identical images get the smallest positive one
            d = np.maximum(_distance(np.take_along_axis(sim, near, 1)), 1e-12)
            rows.append(np.repeat(r + start, k))
            cols.append(near.ravel())
            vals.append(d.ravel())
    graph = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    tree = minimum_spanning_tree(graph.tocsr()).tocoo()
    order = np.argsort(tree.data, kind="stable")
    d = np.where(tree.data[order] <= 1e-12, 0.0, tree.data[order])
    return ChainTree(n, tree.row[order].astype(np.int64), tree.col[order].astype(np.int64), d)


def chain_distance(tree: ChainTree, sources: np.ndarray) -> np.ndarray:
    """float64 (n,): each image's chain distance to the nearest of the `sources` (bool (n,)): the smallest
    threshold at which it lies in one near-duplicate group (connected component) with a source; 0 for the
    sources, inf when none is connected. Kruskal's union-find over the tree's sorted edges."""
    sources = np.asarray(sources, dtype=bool)
    parent = np.arange(tree.n)
    has = sources.copy()
    out = np.where(sources, 0.0, np.inf)
    members: dict[int, list[int]] = {}

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b, d in zip(tree.i.tolist(), tree.j.tolist(), tree.d.tolist()):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        if has[ra] != has[rb]:  # a group without a source joins one with: all its images are reached at d
            reached = members.get(rb, [rb]) if has[ra] else members.get(ra, [ra])
            out[reached] = d
        big, small = (ra, rb) if len(members.get(ra, [ra])) >= len(members.get(rb, [rb])) else (rb, ra)
        parent[small] = big
        merged = members.pop(big, [big])
        merged.extend(members.pop(small, [small]))  # the smaller into the larger: O(n log n) in all
        members[big] = merged
        has[big] = has[big] or has[small]
    return out


def chain_hops(tree: ChainTree, sources: np.ndarray, threshold: float) -> np.ndarray:
    """float64 (n,): how many near-twin steps (tree edges at distance <= threshold) separate each image from the
    nearest of the `sources` (bool (n,)): 0 for a source, inf when no such path exists. Along a scan's chain of
    slices this counts the slices between an image and the nearest labelled one, which is how far a
    transductive model must carry a label (breadth-first search from all sources at once, scipy.sparse.csgraph)."""
    from scipy.sparse.csgraph import shortest_path

    keep = tree.d <= threshold
    source_rows = np.flatnonzero(np.asarray(sources, dtype=bool))
    hub = tree.n  # one extra node joined to every source: one search serves them all
    i = np.r_[tree.i[keep], np.full(len(source_rows), hub)]
    j = np.r_[tree.j[keep], source_rows]
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(tree.n + 1, tree.n + 1)).tocsr()
    return shortest_path(graph, unweighted=True, directed=False, indices=hub)[: tree.n] - 1.0


def chain_order(signatures: np.ndarray) -> np.ndarray:
    """int64 (n,): the images of one near-duplicate group (their (n, d) signatures) in chain order: a depth-first
    walk of their minimum spanning tree from one end of its longest path, so neighbouring slices of a scan
    come out next to each other (for a plain chain, its order from one end)."""
    from scipy.sparse.csgraph import breadth_first_order, depth_first_order, minimum_spanning_tree

    n = len(signatures)
    if n <= 2:
        return np.arange(n)
    sig = np.asarray(signatures, dtype=np.float64)
    d = np.maximum(_distance(sig @ sig.T), 1e-12)
    np.fill_diagonal(d, 0.0)
    tree = minimum_spanning_tree(d)
    far, _ = breadth_first_order(tree, 0, directed=False)  # the last reached is an end of a longest path
    order, _ = depth_first_order(tree, int(far[-1]), directed=False)
    return order.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# file hashes and the signature cache


def file_hashes(paths: Sequence[str | Path]) -> list[str]:
    """sha1 of each file's bytes."""
    out = []
    for path in paths:
        try:
            out.append(hashlib.sha1(Path(path).read_bytes()).hexdigest())
        except OSError as exc:
            raise CompetitionError(f"{path}: cannot read image ({exc.strerror or exc})") from None
    return out


def _key(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20]


def load_for_signatures(paths: Sequence[str | Path]) -> np.ndarray:
    """uint8 (n, 64, 64, 1): the images decoded (through the decode cache) at the size signatures use."""
    from competition.data.cache import load_images

    return load_images([Path(p) for p in paths], LOAD_SIZE, 1)


def image_signatures(
    paths: Sequence[str | Path], hashes: Sequence[str] | None = None, images: np.ndarray | None = None
) -> np.ndarray:
    """Signatures of image files, cached by their content hashes; decodes (or uses `images`) on a miss."""
    hashes = file_hashes(paths) if hashes is None else hashes
    path = cache_dir() / "audit" / f"signatures-{_key(SIGNATURE_VERSION, LOAD_SIZE, THUMB, *hashes)}.npy"
    cached = read_cached_npy(path, (len(paths), THUMB * THUMB))
    if cached is not None:
        return cached
    sigs = signatures(load_for_signatures(paths) if images is None else images)
    write_npy(path, sigs)
    return sigs


def train_signatures(train: pd.DataFrame) -> np.ndarray:
    """Signatures of the training images (row order of `train`, needs a `path` column), cached."""
    if "path" not in train.columns:
        raise CompetitionError("recipe.cv.group_by: near_duplicates needs image paths (train has no 'path' column)")
    return image_signatures([Path(p) for p in train["path"]])


def signatures_of_test(test: pd.DataFrame) -> np.ndarray:
    """Signatures of the test images (row order of `test`, needs a `path` column), cached like the training ones."""
    if "path" not in test.columns:
        raise CompetitionError("test images: no 'path' column, so their near twins in train cannot be measured")
    return image_signatures([Path(p) for p in test["path"]])


def cached_groups(signatures: np.ndarray, threshold: float) -> np.ndarray:
    """near_duplicate_groups, cached by the signatures' bytes and the threshold."""
    sig = np.ascontiguousarray(signatures, dtype=np.float32)
    key = _key(SIGNATURE_VERSION, threshold, hashlib.sha1(sig.tobytes()).hexdigest())
    path = cache_dir() / "audit" / f"groups-{key}.npy"
    groups = read_cached_npy(path, (len(sig),))
    if groups is not None:
        return groups
    groups = near_duplicate_groups(sig, threshold)
    write_npy(path, groups)
    return groups
