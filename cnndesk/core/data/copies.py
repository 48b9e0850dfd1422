"""Copies and look-alikes in a dataset.

What may be wrong with a dataset: duplicates, train/validation leaks, likely mislabelled images.

Every image gets a 64-bit perceptual hash (:func:`perceptual_hashes`)
and small thumbnails (:func:`picture_thumbnails`), computed from the uint8 cache
:func:`.dataset.load_dataset` already holds, so no file is read again. The hashes
only propose pairs: an index of hash bands finds the pairs at most ``distance``
bits apart without comparing all pairs (:func:`candidate_pairs`). The pictures
decide: a pair is a copy when its grey thumbnails correlate almost perfectly, as
they are or after a small crop, brightness and contrast aside, and its colours
agree (:func:`same_pictures`); two handwritten 1s hash alike but are no copies.
Copies form a :class:`DuplicateGroup` in which every two images are a copy pair, so
look-alikes never chain into one large group.
A group is *exact* when all its images have the same pixels, *cross-class* when
its images carry different labels, and a *leak* when the split put some of them
in training and some in validation. :func:`leak_free_split` keeps every group on
one side and every class near the validation share asked for. How it works, the
measurements behind its thresholds and what it costs: ``docs/data-quality.md``.

Everything here is plain NumPy.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np


#: the side of the grey thumbnail an image is hashed from, and the bits of its hash
THUMB_SIDE, HASH_BITS = 32, 64


#: the default largest hash distance (bits of 64) at which two images are compared as pictures
DEFAULT_DISTANCE = 10


#: pairs are looked for once up to this distance, so that any threshold up to it needs no new search
MAX_DISTANCE = 10


#: the index of the pair search: the hash cut into this many bands, each looked up within
#: ``distance // HASH_BANDS`` bits (``docs/data-quality.md``: why 4)
HASH_BANDS = 4


#: images are hashed from every k-th pixel, so that their shorter side keeps at least this many
SAMPLED_SIDE = 64


#: pixel values hashed per step (bounds the float32 copy: 32 MiB)
HASH_CHUNK_VALUES = 1 << 23


#: candidate pairs looked at per step of the pair search (bounds its memory: about 40 MB)
PAIR_BLOCK = 1 << 20


#: candidate pairs whose thumbnails are compared per step (about 8 MB of thumbnails)
PICTURE_BLOCK = 1 << 12


# Whether two images are the same picture; docs/data-quality.md has the measurements behind each figure.
#: each image keeps a grey thumbnail of this side with zero mean and unit spread, GREY_SCALE per unit, as int8
GREY_SIDE, GREY_SCALE = 32, 32


#: thumbnails are compared at this side; a spread below FLAT_SPREAD (of 255) counts as a flat picture
COMPARE_SIDE, FLAT_SPREAD = 16, 2.0


#: a copy: its grey thumbnails correlate at least COARSE_MIN at 8 px and LAYOUT_MIN at 16 px as they are,
#: and at least COPY_MIN at 16 px, as they are or after the best small crop of either picture
COARSE_MIN, LAYOUT_MIN, COPY_MIN = 0.9, 0.95, 0.995


#: the crops tried: each side of a picture cut by one of these shares, the aspect kept (19 with none)
CROP_SHARES = (0.0, 0.02, 0.04)


#: tone: mean grey levels at most TONE_SHIFT apart (of 255), grey spreads at most TONE_FACTOR times apart
TONE_SHIFT, TONE_FACTOR = 64.0, 2.0


#: a picture clipped at white: at least CLIPPED_SHARE of its 16 px blocks at WHITE (of 255) or above
WHITE, CLIPPED_SHARE = 245.0, 0.02


#: colour: 8x8 colour thumbnails; what is left of the colours after their grey, scaled by the contrast,
#: differs by at most COLOUR_TOLERANCE (of 255) on average, over the blocks no closer than CLIPPED to white
COLOUR_SIDE, COLOUR_TOLERANCE, CLIPPED = 8, 6.0, 16.0


def _edges(length: int, parts: int) -> np.ndarray:
    """Start offsets of ``parts`` nearly equal bins over ``length`` (every bin non-empty when length >= parts)."""
    return (np.arange(parts) * length) // parts


def _sampled(images: np.ndarray, keep: int = SAMPLED_SIDE) -> np.ndarray:
    """Every k-th row and column of (N, H, W, C) images, so that the shorter side keeps at least ``keep``.

    The thumbnails average blocks of pixels; a sample of each block averages
    nearly the same, and large images then cost little more than small ones.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C); got shape {images.shape}")
    k = max(1, min(images.shape[1], images.shape[2]) // keep)
    return images[:, ::k, ::k] if k > 1 else images


def _thumbnail_matrix(length: int, side: int) -> np.ndarray:
    """(side, length): averages ``length`` pixels into ``side`` equal-area blocks (repeats them when fewer)."""
    m = np.zeros((side, length))
    if length >= side:
        edges = np.append(_edges(length, side), length)
        for i in range(side):
            m[i, edges[i]:edges[i + 1]] = 1.0 / (edges[i + 1] - edges[i])
    else:
        m[np.arange(side), np.arange(side) * length // side] = 1.0
    return m


def _dct_matrix(side: int) -> np.ndarray:
    """The (unscaled) DCT-II basis: row u holds cos(pi (2x + 1) u / 2 side)."""
    k = np.arange(side)
    return np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * side))


def _low_frequencies(side: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` lowest 2-D frequencies (u, v) but (0, 0), lowest u + v first."""
    uv = sorted(((u, v) for u in range(side) for v in range(side) if (u, v) != (0, 0)),
                key=lambda p: (p[0] + p[1], p[0]))[:count]
    return np.array([p[0] for p in uv]), np.array([p[1] for p in uv])


def perceptual_hashes(images: np.ndarray, chunk_values: int = HASH_CHUNK_VALUES) -> np.ndarray:
    """A 64-bit perceptual hash of each image: (N, H, W, C) uint8 -> (N,) uint64.

    Each image is seen as a 32x32 grey thumbnail (equal-area block means of all
    channels); bit k says whether its k-th lowest spatial frequency (a DCT
    coefficient, the mean left out) is above the median of the 64. The low
    frequencies are the layout of the picture, which resizing, re-encoding and
    pixel noise leave alone; why this and not a difference hash is in
    ``docs/data-quality.md``.

    Thumbnail and DCT are linear, so both fold into two small matrices: one
    product over each image's columns (with the channels), one over its rows,
    of the low frequencies only. No thumbnail is made, and the pixels are read
    once, ``chunk_values`` of them at a time as float32; of an image larger
    than 127 px a side only every k-th row and column (``_sampled``).
    """
    images = _sampled(np.asarray(images))
    n, h, w, c = images.shape
    u, v = _low_frequencies(THUMB_SIDE, HASH_BITS)
    k = int(max(u.max(), v.max())) + 1  # the frequencies needed per axis
    basis = _dct_matrix(THUMB_SIDE)[:k]
    rows = (basis @ _thumbnail_matrix(h, THUMB_SIDE)).astype(np.float32)  # (k, H)
    cols = np.repeat((basis @ _thumbnail_matrix(w, THUMB_SIDE)).T / c, c, axis=0).astype(np.float32)  # (W*C, k)
    out = np.empty(n, dtype=np.uint64)
    step = max(1, chunk_values // max(h * w * c, 1))
    for start in range(0, n, step):
        part = images[start:start + step].reshape(-1, w * c).astype(np.float32)  # (m * H, W * C)
        m = len(part) // h
        by_column = (part @ cols).reshape(m, h, k).transpose(1, 0, 2).reshape(h, m * k)  # one product each way
        coefficients = (rows @ by_column).reshape(k, m, k).transpose(1, 0, 2)[:, u, v]  # (m, 64)
        bits = coefficients > np.median(coefficients, axis=1, keepdims=True)
        out[start:start + m] = np.ascontiguousarray(np.packbits(bits, axis=1)).view(">u8")[:, 0]
    return out


def hamming(a, b) -> np.ndarray:
    """Bits in which the hashes ``a`` and ``b`` differ (broadcast)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


def _band_masks(bits: int, radius: int) -> np.ndarray:
    """Every value of ``bits`` bits with at most ``radius`` bits set (the XORs within ``radius`` of a band)."""
    return np.array([sum(1 << b for b in flip) for k in range(radius + 1) for flip in combinations(range(bits), k)],
                    dtype=np.int64)


def candidate_pairs(hashes: np.ndarray, max_distance: int = MAX_DISTANCE):
    """The pairs of images whose hashes differ in at most ``max_distance`` bits, as blocks of (i, j, distance) rows.

    Multi-index hashing: the 64 bits are cut into ``HASH_BANDS`` bands of 16; two hashes
    at most ``max_distance`` apart differ in at most ``max_distance // HASH_BANDS`` bits
    in at least one band. Each band's images are sorted into buckets by their band value,
    and each image looks up only the buckets within that many bits of its own (137 of
    65,536 for a distance of 10): about n x 550 look-ups and, for hashes spread at
    random, n² / 240 candidates instead of n² / 2 comparisons. A pair found in several
    bands is kept in the first. Each block holds at most about ``PAIR_BLOCK`` candidates before their
    hash distance is checked, so that pictures that hash alike by the thousand never
    fill memory. Every pair comes once, ``i < j``.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    n = len(h)
    if n < 2:
        return
    width = HASH_BITS // HASH_BANDS
    radius = max_distance // HASH_BANDS
    bands = [((h >> np.uint64(b * width)) & np.uint64((1 << width) - 1)).astype(np.int32) for b in range(HASH_BANDS)]
    rows = np.arange(n, dtype=np.int32)
    masks = _band_masks(width, radius).astype(np.int32)
    per_step = max(1, (1 << 20) // n)  # masks looked up at once
    for b, v in enumerate(bands):
        order = np.argsort(v, kind="stable").astype(np.int32)
        counts = np.bincount(v, minlength=1 << width).astype(np.int32)
        start = (np.cumsum(counts) - counts).astype(np.int32)
        for m0 in range(0, len(masks), per_step):
            wanted = (v[None, :] ^ masks[m0:m0 + per_step, None]).ravel()  # the buckets each image looks up
            hits = counts[wanted]
            asks = np.flatnonzero(hits)
            ends = np.cumsum(hits[asks], dtype=np.int64)
            first = 0
            while first < len(asks):
                last = max(first + 1, int(np.searchsorted(ends, (ends[first - 1] if first else 0) + PAIR_BLOCK,
                                                          side="right")))
                ask = asks[first:last]
                found = hits[ask]
                total = int(ends[last - 1] - (ends[first - 1] if first else 0))
                i = np.repeat(rows[ask % n], found)
                j = order[np.repeat(start[wanted[ask]] - (np.cumsum(found, dtype=np.int32) - found), found)
                          + np.arange(total, dtype=np.int32)]
                keep = i < j
                i, j = i[keep], j[keep]
                d = np.bitwise_count(h[i] ^ h[j])
                keep = d <= max_distance
                for earlier in bands[:b]:  # already found in an earlier band
                    keep &= np.bitwise_count(earlier[i] ^ earlier[j]) > radius
                if keep.any():
                    yield np.stack([i[keep], j[keep], d[keep]], axis=1).astype(np.int32)
                first = last


def similar_pairs(hashes: np.ndarray, max_distance: int = MAX_DISTANCE,
                  thumbnails: "Thumbnails | None" = None) -> np.ndarray:
    """The pairs of images whose hashes differ in at most ``max_distance`` bits, and with ``thumbnails`` whose
    pictures are the same (:func:`same_pictures`).

    Returns an (M, 3) int32 array of rows ``(i, j, distance)`` with ``i < j``, sorted.
    The candidates come from an index of the hashes (:func:`candidate_pairs`), a
    bounded block at a time, and are compared as pictures block by block, so only
    the pairs that pass are kept. Pictures of a few simple shapes on plain
    backgrounds, or handwritten digits, hash alike by the million: 0.35 million
    candidate pairs among 10,000 such images, 35 million expected among 100,000
    (they grow with the square of the count), which would take gigabytes if held.
    """
    found = [np.zeros((0, 3), np.int32)]
    for block in candidate_pairs(hashes, max_distance):
        found.append(block[same_pictures(thumbnails, block)] if thumbnails is not None else block)
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


@dataclass
class Thumbnails:
    """What is kept of each image to tell a copy from a look-alike (:func:`picture_thumbnails`)."""

    grey: np.ndarray  # (N, GREY_SIDE, GREY_SIDE) int8: grey block means, zero mean, GREY_SCALE per unit of spread
    fine: np.ndarray  # (N, COMPARE_SIDE ** 2) int8: the same at COMPARE_SIDE (block means of ``grey``)
    coarse: np.ndarray  # (N, 64) float32: the same at 8x8, zero mean, unit length
    tone: np.ndarray  # (N, 2) float32: mean and spread (standard deviation) of the grey block means, of 255
    colour: np.ndarray  # (N, COLOUR_SIDE, COLOUR_SIDE * C) float16 block means, colour kept (channels last)

    def __len__(self) -> int:
        return len(self.grey)

    def __getitem__(self, rows) -> "Thumbnails":
        return Thumbnails(*(getattr(self, f.name)[rows] for f in dataclasses.fields(Thumbnails)))

    @staticmethod
    def concatenate(parts: Sequence["Thumbnails"], channels: int) -> "Thumbnails":
        if not parts:
            return Thumbnails(np.zeros((0, GREY_SIDE, GREY_SIDE), np.int8), np.zeros((0, COMPARE_SIDE ** 2), np.int8),
                              np.zeros((0, 64), np.float32), np.zeros((0, 2), np.float32),
                              np.zeros((0, COLOUR_SIDE, COLOUR_SIDE * channels), np.float16))
        return Thumbnails(*(np.concatenate([getattr(p, f.name) for p in parts])
                            for f in dataclasses.fields(Thumbnails)))


def _unit(x: np.ndarray) -> np.ndarray:
    """Each row of (m, ...) ``x`` flattened, less its mean, scaled to length 1 (a flat row stays 0)."""
    x = x.reshape(len(x), -1).astype(np.float32)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-6)


def picture_thumbnails(images: np.ndarray) -> Thumbnails:
    """The :class:`Thumbnails` of (N, H, W, C) uint8 images: grey 32x32, 16x16 and 8x8, tone, colour 8x8.

    The grey thumbnail (equal-area block means of all channels) is kept with its mean
    taken away and divided by its spread (at least ``FLAT_SPREAD``), so brightness
    and contrast drop out; as int8 it takes 1 KB an image, about 1.9 KB with the rest.
    Images larger than 127 px a side are read from every k-th pixel (``_sampled``);
    ``HASH_CHUNK_VALUES`` pixel values are converted to float32 at a time.
    """
    images = _sampled(np.asarray(images), 4 * GREY_SIDE)
    n, h, w, c = images.shape
    rows = _thumbnail_matrix(h, GREY_SIDE).astype(np.float32)
    cols = np.repeat(_thumbnail_matrix(w, GREY_SIDE).T / c, c, axis=0).astype(np.float32)  # (W*C, side): grey too
    k, f = GREY_SIDE // 8, GREY_SIDE // COMPARE_SIDE
    out = Thumbnails(np.empty((n, GREY_SIDE, GREY_SIDE), np.int8), np.empty((n, COMPARE_SIDE ** 2), np.int8),
                     np.empty((n, 64), np.float32), np.empty((n, 2), np.float32),
                     colour_thumbnails(images).astype(np.float16))

    def as_int8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x * GREY_SCALE), -127, 127).astype(np.int8)

    step = max(1, HASH_CHUNK_VALUES // max(h * w * c, 1))
    for start in range(0, n, step):
        part = images[start:start + step].reshape(-1, w * c).astype(np.float32)
        m = len(part) // h
        grey = rows @ (part @ cols).reshape(m, h, GREY_SIDE)
        mean, spread = grey.mean(axis=(1, 2)), grey.std(axis=(1, 2))
        z = (grey - mean[:, None, None]) / np.maximum(spread, FLAT_SPREAD)[:, None, None]
        out.grey[start:start + m] = as_int8(z)
        out.fine[start:start + m] = as_int8(z.reshape(m, COMPARE_SIDE, f, COMPARE_SIDE, f).mean(axis=(2, 4))
                                            ).reshape(m, -1)
        out.coarse[start:start + m] = _unit(z.reshape(m, 8, k, 8, k).mean(axis=(2, 4)))
        out.tone[start:start + m] = np.stack([mean, spread], axis=1)
    return out


def _crop_matrix(low: float, high: float, length: int, side: int) -> np.ndarray:
    """(side, length): averages the span [low, high] of ``length`` pixels into ``side`` equal-width blocks."""
    edges = np.linspace(low, high, side + 1)
    pixels = np.arange(length)
    overlap = np.clip(np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


@functools.cache
def _crops() -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """The crops of a grey thumbnail tried: each side cut by one of ``CROP_SHARES``, the aspect kept (as much cut
    in all from the top and bottom as from the left and right), 19 with no cut at all. For each cut of the rows
    (a matrix that takes them to ``COMPARE_SIDE``), the matching cuts of the columns."""
    cuts = [(low, high) for low in CROP_SHARES for high in CROP_SHARES]

    def matrix(low: float, high: float) -> np.ndarray:
        return _crop_matrix(low * GREY_SIDE, GREY_SIDE - high * GREY_SIDE, GREY_SIDE, COMPARE_SIDE)

    return [(matrix(*rows), [matrix(*cols) for cols in cuts if abs(sum(cols) - sum(rows)) < 1e-9]) for rows in cuts]


def _best_crop(grey: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The highest correlation of ``other`` (:func:`_unit` rows at ``COMPARE_SIDE``) with any crop (:func:`_crops`)
    of each ``grey`` thumbnail."""
    best = np.full(len(grey), -1.0, np.float32)
    for down, acrosses in _crops():
        part = down @ grey  # (m, COMPARE_SIDE, GREY_SIDE)
        for across in acrosses:
            best = np.maximum(best, (_unit(part @ across.T) * other).sum(axis=1))
    return best


@dataclass
class PairScores:
    """How alike the pictures of some pairs are (:func:`pair_scores`); ``copy`` is the one that decides."""

    coarse: np.ndarray  # correlation of the 8x8 grey thumbnails
    layout: np.ndarray  # of the 16x16 grey thumbnails as they are
    copy: np.ndarray  # of the 16x16 grey thumbnails after the best crop (computed where coarse and layout pass)
    tone: np.ndarray  # bool: mean grey levels and spreads close enough
    colour: np.ndarray  # colour difference left after the grey, of 255 (0 for grey images)

    def same(self) -> np.ndarray:
        return ((self.coarse >= COARSE_MIN) & (self.layout >= LAYOUT_MIN) & (self.copy >= COPY_MIN) & self.tone
                & (self.colour <= COLOUR_TOLERANCE))


def pair_scores(thumbnails: Thumbnails, pairs: np.ndarray, search_all: bool = False) -> PairScores:
    """Compare the pictures of the ``pairs`` (rows ``(i, j, ...)`` of ``thumbnails``).

    Cheapest first: the 8x8 grey thumbnails and the tone of every pair, then the 16x16
    ones of the pairs that passed: their correlation as they are (layout), and where
    that is at least ``LAYOUT_MIN`` but below ``COPY_MIN``, once both are clipped at white
    alike (:func:`_clipped_alike`) and after each of 19 small crops of either picture
    (:func:`_crops`). Correlation ignores brightness and contrast.
    ``search_all`` computes every score of every pair (for measuring).
    """
    i, j = np.asarray(pairs)[:, 0], np.asarray(pairs)[:, 1]
    m = len(i)
    coarse = (thumbnails.coarse[i] * thumbnails.coarse[j]).sum(axis=1)
    coarse[~thumbnails.coarse[i].any(axis=1) & ~thumbnails.coarse[j].any(axis=1)] = 1.0  # two pictures of one grey
    (mean_i, spread_i), (mean_j, spread_j) = thumbnails.tone[i].T, thumbnails.tone[j].T
    low, high = np.minimum(spread_i, spread_j), np.maximum(spread_i, spread_j)
    tone = (np.abs(mean_i - mean_j) <= TONE_SHIFT) & (np.maximum(high, FLAT_SPREAD) <=
                                                      TONE_FACTOR * np.maximum(low, FLAT_SPREAD))
    layout = np.full(m, -1.0, np.float32)
    copy = np.full(m, -1.0, np.float32)
    colour = np.full(m, np.inf, np.float32)
    look = np.flatnonzero((coarse >= COARSE_MIN) & tone) if not search_all else np.arange(m)
    if len(look):
        fi, fj = thumbnails.fine[i[look]].astype(np.float32), thumbnails.fine[j[look]].astype(np.float32)
        ui, uj = _unit(fi), _unit(fj)
        flat = ~ui.any(axis=1) & ~uj.any(axis=1)  # two pictures of one grey
        layout[look] = np.where(flat, 1.0, np.einsum("ij,ij->i", ui, uj))
        near = np.flatnonzero((layout[look] >= LAYOUT_MIN) | search_all)
        copy[look[near]] = layout[look[near]]
        clip = near[(copy[look[near]] < COPY_MIN) | search_all]
        if len(clip):
            copy[look[clip]] = np.maximum(copy[look[clip]], _clipped_alike(
                fi[clip], fj[clip], thumbnails.tone[i[look[clip]]], thumbnails.tone[j[look[clip]]]))
        search = near[(copy[look[near]] < COPY_MIN) | search_all]
        if len(search):
            a = thumbnails.grey[i[look[search]]].astype(np.float32)
            b = thumbnails.grey[j[look[search]]].astype(np.float32)
            copy[look[search]] = np.maximum(copy[look[search]],
                                            np.maximum(_best_crop(a, uj[search]), _best_crop(b, ui[search])))
    pick = look[copy[look] >= COPY_MIN] if not search_all else look  # colours only where the grey agrees
    colour[pick] = _colour_difference(thumbnails.colour[i[pick]].astype(np.float32),
                                      thumbnails.colour[j[pick]].astype(np.float32))
    return PairScores(coarse, layout, copy, tone, colour)


def _clipped_alike(zi: np.ndarray, zj: np.ndarray, tone_i: np.ndarray, tone_j: np.ndarray) -> np.ndarray:
    """The correlation of two (m, COMPARE_SIDE ** 2) grey thumbnails (``zi``, ``zj`` as ``Thumbnails.fine``, with
    their ``tone``) once both are cut off at white the same way; -1 where that does not apply.

    A copy brightened until its highlights clip correlates less than its brightness
    alone would make it: its white blocks are flat, the original's are not. Where the
    brighter picture has at least ``CLIPPED_SHARE`` of its blocks at ``WHITE`` or above
    and the darker fewer than half as many, the darker one's brightest blocks (as many)
    are cut to one level and the brighter one's to ``WHITE`` before they are correlated.
    """
    m = len(zi)
    li, lj = (z.reshape(m, -1) / GREY_SCALE * np.maximum(t[:, 1:], FLAT_SPREAD) + t[:, :1]
              for z, t in ((zi, tone_i), (zj, tone_j)))
    swap = li.mean(axis=1) > lj.mean(axis=1)
    dark, bright = np.where(swap[:, None], lj, li), np.where(swap[:, None], li, lj)
    white, whiter = (dark >= WHITE).mean(axis=1), (bright >= WHITE).mean(axis=1)
    applies = (whiter >= CLIPPED_SHARE) & (white < whiter / 2)
    out = np.full(m, -1.0, np.float32)
    if applies.any():
        dark, bright, whiter = dark[applies], bright[applies], whiter[applies]
        top = np.sort(dark, axis=1)[np.arange(len(dark)), np.floor((1 - whiter) * (dark.shape[1] - 1)).astype(int)]
        out[applies] = (_unit(np.minimum(dark, top[:, None])) * _unit(np.minimum(bright, WHITE))).sum(axis=1)
    return out


def _colour_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean difference (of 255) of the colours of (m, side, side * C) colour thumbnails once their grey is taken
    away and ``a``'s is scaled to ``b``'s contrast: brightness and contrast drop out, hue does not.

    Blocks where either picture is near white in some channel are left out (a brightened copy
    clips there, which changes its colour), unless that leaves fewer than a quarter of them.
    """
    m, c = len(a), a.shape[2] // a.shape[1]
    if c == 1 or not m:
        return np.zeros(m, np.float32)
    a, b = a.reshape(m, -1, c), b.reshape(m, -1, c)
    grey_a, grey_b = a.mean(axis=2), b.mean(axis=2)
    gain = np.maximum(grey_b.std(axis=1), FLAT_SPREAD) / np.maximum(grey_a.std(axis=1), FLAT_SPREAD)
    apart = np.abs((b - grey_b[..., None]) - gain[:, None, None] * (a - grey_a[..., None])).mean(axis=2)
    kept = ((a < 255 - CLIPPED) & (b < 255 - CLIPPED)).all(axis=2)
    kept[kept.sum(axis=1) < kept.shape[1] // 4] = True
    return ((apart * kept).sum(axis=1) / kept.sum(axis=1)).astype(np.float32)


def same_pictures(thumbnails: Thumbnails, pairs: np.ndarray) -> np.ndarray:
    """Whether each of the ``pairs`` shows the same picture (:func:`pair_scores`), ``PICTURE_BLOCK`` pairs a step.

    A hash distance alone cannot tell a copy from a look-alike: two handwritten 1s
    hash closer than a copy cropped by 3 %. The thumbnails can: a copy correlates
    almost perfectly once it is lined up, brightness and contrast aside; two 1s
    drawn apart do not. ``docs/data-quality.md`` has the measurements.
    """
    pairs = np.asarray(pairs).reshape(-1, 3)
    same = np.zeros(len(pairs), bool)
    for start in range(0, len(pairs), PICTURE_BLOCK):
        same[start:start + PICTURE_BLOCK] = pair_scores(thumbnails, pairs[start:start + PICTURE_BLOCK]).same()
    return same


def colour_thumbnails(images: np.ndarray, side: int = COLOUR_SIDE) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, side, side * C) float32 block means, colour kept (channels last)."""
    images = _sampled(np.asarray(images), 4 * side)
    n, h, w, c = images.shape
    rows = _thumbnail_matrix(h, side).astype(np.float32)
    # (W * C, side * C): averages the columns of each channel on its own
    cols = np.kron(_thumbnail_matrix(w, side).T, np.eye(c)).astype(np.float32)
    out = np.empty((n, side, side * c), np.float32)
    step = max(1, HASH_CHUNK_VALUES // max(h * w * c, 1))
    for start in range(0, n, step):
        part = images[start:start + step].reshape(-1, w * c).astype(np.float32)
        out[start:start + len(part) // h] = rows @ (part @ cols).reshape(-1, h, side * c)
    return out


def confirm_pairs(images: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The ``pairs`` whose images show the same picture (:func:`same_pictures`).

    ``images`` may be an on-disk cache: only the paired rows are read, a chunk at a time.
    """
    pairs = np.asarray(pairs).reshape(-1, 3)
    if not len(pairs):
        return pairs
    rows = np.unique(pairs[:, :2])
    thumbs = chunked_thumbnails(images, rows)
    where = np.searchsorted(rows, pairs[:, :2])
    return pairs[same_pictures(thumbs, np.concatenate([where, pairs[:, 2:]], axis=1))]


def image_chunks(images, rows: np.ndarray | None = None, chunk_bytes: int = 64 << 20):
    """The images ``rows`` (None: all) as consecutive (n, H, W, C) arrays of about ``chunk_bytes`` of pixels each.

    ``images`` is the in-memory array or an on-disk ``ShardedImages``; either
    way no more than a chunk of them is copied at once.
    """
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    step = max(1, chunk_bytes // (int(np.prod(images.shape[1:])) or 1))
    for start in range(0, len(rows), step):
        yield np.asarray(images[rows[start:start + step]])


def chunked_thumbnails(images, rows: np.ndarray | None = None) -> Thumbnails:
    """:func:`picture_thumbnails` of the images ``rows`` (None: all), read a chunk at a time (:func:`image_chunks`)."""
    return Thumbnails.concatenate([picture_thumbnails(chunk) for chunk in image_chunks(images, rows)],
                                  images.shape[-1])


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are (near) copies of each other: rows of the dataset, smallest first."""

    members: tuple[int, ...]
    exact: bool  # all have the same pixels (at the size the dataset was read)
    cross_class: bool  # they carry more than one label
    leak: bool  # some are in the training split, some in the validation split
    distance: int  # the largest hash distance of a pair that links the group

    @property
    def kind(self) -> str:
        """"exact" or "near"; "cross-class" before either when the labels differ."""
        base = "exact" if self.exact else "near"
        return f"cross-class {base}" if self.cross_class else base


@dataclass
class DuplicateReport:
    """The duplicate groups of a dataset at one hash distance."""

    groups: list[DuplicateGroup]
    distance: int

    def counts(self) -> dict[str, int]:
        """How many groups of each kind, and how many images are in a group beside its first."""
        g = self.groups
        return {"groups": len(g), "exact": sum(x.exact for x in g), "near": sum(not x.exact for x in g),
                "within_class": sum(not x.cross_class for x in g), "cross_class": sum(x.cross_class for x in g),
                "leaks": sum(x.leak for x in g), "extra_copies": sum(len(x.members) - 1 for x in g)}

    def summary(self) -> str:
        """One sentence for the dataset panel and the CLI."""
        c = self.counts()
        if not c["groups"]:
            return f"No duplicates found (hash distance {self.distance} or less)."
        return (f"{c['groups']} duplicate group(s) at hash distance {self.distance} or less: {c['exact']} exact, "
                f"{c['near']} near; {c['cross_class']} across classes; {c['leaks']} across the train/validation "
                f"split; {c['extra_copies']} extra copies in all.")

    def to_json(self, paths: Sequence[str], labels: np.ndarray, class_names: Sequence[str],
                val_rows: np.ndarray | None = None) -> dict:
        in_val = set(np.asarray(val_rows).tolist()) if val_rows is not None else set()
        return {"distance": self.distance, "counts": self.counts(), "groups": [
            {"kind": g.kind, "exact": g.exact, "cross_class": g.cross_class, "leak": g.leak, "distance": g.distance,
             "images": [{"path": paths[i], "class": class_names[int(labels[i])],
                         "split": "validation" if i in in_val else "training"} for i in g.members]}
            for g in self.groups]}


def _copy_groups(pairs: np.ndarray) -> list[list[int]]:
    """Groups of rows in which every two are linked by one of ``pairs`` (complete linkage), each row in one group.

    A group never grows along a path: a~b and b~c make no group of three unless a~c.
    The row with the most links starts a group (the lowest row on a tie); its linked
    rows join it, most linked first, each only when it is linked to every member so far.
    """
    links: dict[int, set[int]] = {}
    for i, j in pairs[:, :2].tolist():
        links.setdefault(i, set()).add(j)
        links.setdefault(j, set()).add(i)
    taken: set[int] = set()
    groups = []
    for first in sorted(links, key=lambda r: (-len(links[r]), r)):
        if first in taken:
            continue
        members = [first]
        for r in sorted(links[first] - taken, key=lambda r: (-len(links[r]), r)):
            if all(m in links[r] for m in members[1:]):
                members.append(r)
        if len(members) > 1:
            taken.update(members)
            groups.append(sorted(members))
    return groups


def find_duplicates(images: np.ndarray, labels: np.ndarray, pairs: np.ndarray, distance: int = DEFAULT_DISTANCE,
                    val_rows: np.ndarray | None = None, left_out: Sequence[int] = ()) -> DuplicateReport:
    """Group the copies linked by ``pairs`` (from :func:`similar_pairs`, pictures compared) at ``distance`` or less.

    Every two images of a group are a confirmed pair (:func:`_copy_groups`), so
    look-alikes never chain into one large group.

    Args:
        images: the uint8 cache (to tell exact copies from near ones).
        labels: the class of each row.
        pairs: ``(i, j, distance)`` rows.
        distance: the largest hash distance at which two images are compared.
        val_rows: the validation split, to mark groups that straddle it.
        left_out: rows to leave out (excluded images).
    """
    pairs = np.asarray(pairs).reshape(-1, 3)
    pairs = pairs[pairs[:, 2] <= distance]
    if len(left_out):
        gone = np.zeros(len(labels), bool)
        gone[np.asarray(list(left_out), dtype=np.int64)] = True
        pairs = pairs[~gone[pairs[:, 0]] & ~gone[pairs[:, 1]]]
    in_val = np.zeros(len(labels), bool)
    if val_rows is not None and len(val_rows):
        in_val[np.asarray(val_rows)] = True
    apart = {(i, j): d for i, j, d in pairs.tolist()}
    groups = []
    for members in _copy_groups(pairs):
        first = images[members[0]]
        sides = in_val[members]
        groups.append(DuplicateGroup(
            members=tuple(members),
            exact=all(np.array_equal(first, images[m]) for m in members[1:]),
            cross_class=len({int(labels[m]) for m in members}) > 1,
            leak=bool(sides.any() and not sides.all()),
            distance=max(apart[p] for p in combinations(members, 2))))
    groups.sort(key=lambda g: (not g.cross_class, not g.leak, g.distance, g.members))
    return DuplicateReport(groups, distance)
