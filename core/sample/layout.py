"""World layout of the sample scene: what lies where (materials, heights), pixel by pixel.

A planned desert city on a slightly rotated and gently warped grid of streets (local streets and
major roads with medians and palm rows, roundabouts), city blocks that are villa plots (villas with
rooftop details, walls, pools, gardens), apartment/office blocks (large roofs with AC units and
stair cores, parking with cars), parks (lawn, tree clusters, paths, ponds), open desert (sand,
tracks, shrubs), and a meandering creek with stone banks and bridges. Every quantity is a pure
function of the world position and the seed, so any window is generated independently.
"""

from __future__ import annotations

import math

import numpy as np

from .blocks import (
    APARTMENTS,
    ASPHALT,
    BANK,
    CAR,
    DESERT,
    LAWN,
    MARKING,
    PARK,
    SAND,
    SIDEWALK,
    VILLAS,
    WATER,
    WATERFRONT,
    BlockContents,
)
from .noise import table_uniform, table_uniforms, uniform, value_noise

PU, PV = 240.0, 165.0          # street spacing along the two grid axes (m)
JU, JV = 40.0, 24.0            # jitter of street positions (m)
MAJOR_W, MINOR_W = 34.0, 11.0  # road corridor widths (m)
MEDIAN = 2.2                   # half width of a major road's median (m)
LANE = 3.6                     # lane width (m)
CREEK_PERIOD = 2600.0          # distance between creeks (m)


class Layout(BlockContents):
    """The world of one seed; ``scene_size`` (metres, width, height) places the first creek."""

    def __init__(self, seed: int, scene_size: tuple[float, float]) -> None:
        self.seed = int(seed)
        u = uniform(self.seed, 1, np.arange(16))
        self.theta = math.radians(14 + 18 * u[0])
        self.warp = (9 * u[1], 2 * math.pi * u[2], 7 * u[3], 2 * math.pi * u[4])
        self.major_u = int(u[5] * 4)
        self.major_v = int(u[6] * 5)
        w, h = scene_size
        self.creek_angle = self.theta + math.radians(62 + 25 * u[7])
        ca, sa = math.cos(self.creek_angle), math.sin(self.creek_angle)
        cx, cy = w * (0.62 + 0.1 * u[8]), h * 0.5
        self.creek_t0 = -cx * sa + cy * ca
        self.creek_phase = (2 * math.pi * u[9], 2 * math.pi * u[10], 2 * math.pi * u[11])
        self.creek_hw = float(np.clip(0.045 * min(w, h), 16.0, 70.0))
        self.dev_salt = 100

    # --- geometry helpers -------------------------------------------------------------------
    def to_grid(self, x, y):
        """Scene metres -> grid frame (u, v) in metres, rotated and gently warped."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        u = x * c + y * s
        v = -x * s + y * c
        a1, p1, a2, p2 = self.warp
        return u + a1 * np.sin(v / 430.0 + p1), v + a2 * np.sin(u / 520.0 + p2)

    def from_grid(self, u, v):
        """Approximate inverse of :meth:`to_grid` (ignores the warp, a few metres at most)."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        return u * c - v * s, u * s + v * c

    def line_pos(self, i, axis: int):
        p, j, salt = (PU, JU, 11) if axis == 0 else (PV, JV, 12)
        r = table_uniform(self.seed, salt, i) if np.ndim(i) else uniform(self.seed, salt, i)
        return i * p + j * (r - 0.5)

    def line_width(self, i, axis: int):
        major = ((i - (self.major_u if axis == 0 else self.major_v)) % (4 if axis == 0 else 6)) == 0
        r = table_uniform(self.seed, 13 + axis, i) if np.ndim(i) else uniform(self.seed, 13 + axis, i)
        w = MINOR_W + 2.0 * (r > 0.6)
        return np.where(major, MAJOR_W, w), major

    def creek(self, x, y):
        """Signed distance to the creek's bank (m, negative in water) and the along-creek coordinate."""
        ca, sa = math.cos(self.creek_angle), math.sin(self.creek_angle)
        s = x * ca + y * sa
        t = -x * sa + y * ca - self.creek_t0
        p1, p2, p3 = self.creek_phase
        k1, k2 = 2 * math.pi / 900.0, 2 * math.pi / 330.0
        centre = 110 * np.sin(k1 * s + p1) + 35 * np.sin(k2 * s + p2)
        slope = 110 * k1 * np.cos(k1 * s + p1) + 35 * k2 * np.cos(k2 * s + p2)
        d = t - centre
        d = (d + CREEK_PERIOD / 2) % CREEK_PERIOD - CREEK_PERIOD / 2
        hw = self.creek_hw * (1 + 0.3 * np.sin(2 * math.pi * s / 700.0 + p3))
        return np.abs(d) / np.sqrt(1 + slope * slope) - hw, s

    def cell_use(self, i, k):
        """Use of the city blocks (i, k) (integer arrays of the same shape)."""
        cu = (self.line_pos(i, 0) + self.line_pos(i + 1, 0)) / 2
        cv = (self.line_pos(k, 1) + self.line_pos(k + 1, 1)) / 2
        x, y = self.from_grid(cu, cv)
        dev = value_noise(x, y, 450.0, self.seed, self.dev_salt)       # districts
        dense = value_noise(x, y, 500.0, self.seed, self.dev_salt + 1)  # towers vs villas
        r = uniform(self.seed, 20, i, k)
        use = np.where(dense > 0.6, APARTMENTS, VILLAS)
        use = np.where((r < 0.16) & (dev > 0.3), PARK, use)
        use = np.where(dev < 0.26 + 0.1 * r, DESERT, use)
        # Blocks the creek passes through are waterfront promenades.
        near = np.full(np.shape(i), np.inf)
        middle = np.full(np.shape(i), np.inf)
        for fu in np.linspace(0, 1, 6):
            for fv in np.linspace(0, 1, 6):
                pu = self.line_pos(i, 0) * (1 - fu) + self.line_pos(i + 1, 0) * fu
                pv = self.line_pos(k, 1) * (1 - fv) + self.line_pos(k + 1, 1) * fv
                d = self.creek(*self.from_grid(pu, pv))[0]
                near = np.minimum(near, d)
                if 0.2 < fu < 0.8 and 0.2 < fv < 0.8:
                    middle = np.minimum(middle, d)
        # Villas near the creek give up the plots it reaches (see _villas); big blocks move away.
        use = np.where((near < 45.0) & (use == APARTMENTS), VILLAS, use)
        return np.where(middle < 10.0, WATERFRONT, use)

    # --- the layout of a window ---------------------------------------------------------------
    def build(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Materials, heights (m) and per-object tones for pixel centres at scene metres (x, y)."""
        seed = self.seed
        shape = x.shape
        mat = np.full(shape, SAND, dtype=np.uint8)
        hgt = np.zeros(shape, dtype=np.float32)
        tone = np.zeros(shape, dtype=np.float32)   # per-object random value (colour choice)
        u, v = self.to_grid(x, y)

        # Street grid: the cell (i, k) each pixel falls in, and offsets to the nearest streets.
        def locate(c, axis):
            p = PU if axis == 0 else PV
            i = np.floor(c / p).astype(np.int64)
            i = np.where(c < self.line_pos(i, axis), i - 1, i)
            i = np.where(c >= self.line_pos(i + 1, axis), i + 1, i)
            return i
        i, k = locate(u, 0), locate(v, 1)
        pu0, pu1 = self.line_pos(i, 0), self.line_pos(i + 1, 0)
        pv0, pv1 = self.line_pos(k, 1), self.line_pos(k + 1, 1)
        wu0, mu0 = self.line_width(i, 0)
        wu1, mu1 = self.line_width(i + 1, 0)
        wv0, mv0 = self.line_width(k, 1)
        wv1, mv1 = self.line_width(k + 1, 1)
        a = (u - pu0 - wu0 / 2).astype(np.float32)   # position inside the block (m)
        b = (v - pv0 - wv0 / 2).astype(np.float32)
        big_a = (pu1 - wu1 / 2 - pu0 - wu0 / 2).astype(np.float32)
        big_b = (pv1 - wv1 / 2 - pv0 - wv0 / 2).astype(np.float32)
        uses = self._cell_table(i, k)
        creek_d, creek_s = self.creek(x, y)

        ctx = dict(seed=seed, x=x, y=y, u=u, v=v, i=i, k=k, a=a, b=b, A=big_a, B=big_b,
                   u0=pu0 + wu0 / 2, v0=pv0 + wv0 / 2,
                   mat=mat, hgt=hgt, tone=tone, creek=creek_d)
        for use, fn in ((VILLAS, self._villas), (APARTMENTS, self._apartments), (PARK, self._park),
                        (DESERT, self._desert), (WATERFRONT, self._waterfront)):
            sel = uses == use
            if sel.any():
                fn(ctx, sel)
        self._roof_clutter(ctx)

        # Roads on top of the blocks.
        near_u = (u - pu0) < (pu1 - u)
        off_u = np.where(near_u, u - pu0, u - pu1)
        w_u = np.where(near_u, wu0, wu1)
        maj_u = np.where(near_u, mu0, mu1)
        near_v = (v - pv0) < (pv1 - v)
        off_v = np.where(near_v, v - pv0, v - pv1)
        w_v = np.where(near_v, wv0, wv1)
        maj_v = np.where(near_v, mv0, mv1)
        self._roads(ctx, off_u, w_u, maj_u, off_v, w_v, maj_v,
                    np.where(near_u, i, i + 1), np.where(near_v, k, k + 1))

        # The creek: water and stone banks; major roads cross on bridges.
        bridge = ((np.abs(off_u) < w_u / 2) & maj_u) | ((np.abs(off_v) < w_v / 2) & maj_v)
        bank = (creek_d < 3.5) & ~bridge
        water = (creek_d < 0) & ~bridge
        mat[bank] = BANK
        hgt[bank] = 0
        tone[bank] = 0.5
        mat[water] = WATER
        hgt[water] = 0
        tone[water] = np.clip(-creek_d[water] / 7.0, 0, 1)  # 0 at the shore, 1 in deep water
        deck = bridge & (creek_d < 4)
        hgt[deck] = np.maximum(hgt[deck], 6.0)
        in_u, in_v = np.abs(off_u) < w_u / 2, np.abs(off_v) < w_v / 2
        rail = deck & ((maj_u & in_u & ~in_v & (np.abs(np.abs(off_u) - w_u / 2) < 0.6))
                       | (maj_v & in_v & ~in_u & (np.abs(np.abs(off_v) - w_v / 2) < 0.6)))
        mat[rail] = SIDEWALK
        hgt[rail] = 7.0
        self._road_palms(ctx, off_u, maj_u, v, off_v, maj_v, u, bridge | (creek_d < 6))
        return ctx

    def _cell_table(self, i, k):
        i0, k0 = int(i.min()), int(k.min())
        gi, gk = np.meshgrid(np.arange(i0, int(i.max()) + 1), np.arange(k0, int(k.max()) + 1), indexing="ij")
        return self.cell_use(gi, gk)[i - i0, k - k0]

    # --- roads -----------------------------------------------------------------------------------
    def _roads(self, c, off_u, w_u, maj_u, off_v, w_v, maj_v, line_u, line_v):
        seed, mat, hgt, tone = c["seed"], c["mat"], c["hgt"], c["tone"]
        u, v = c["u"], c["v"]
        qu, qv = np.abs(off_u), np.abs(off_v)
        in_u, in_v = qu < w_u / 2, qv < w_v / 2
        road = in_u | in_v
        sw_u = np.where(maj_u, 3.5, 2.3)
        sw_v = np.where(maj_v, 3.5, 2.3)
        carr_u = in_u & (qu < w_u / 2 - sw_u) & ~(maj_u & (qu < MEDIAN))
        carr_v = in_v & (qv < w_v / 2 - sw_v) & ~(maj_v & (qv < MEDIAN))
        median_u = in_u & maj_u & (qu < MEDIAN)
        median_v = in_v & maj_v & (qv < MEDIAN)
        cross = in_u & in_v
        mat[road] = SIDEWALK
        hgt[road] = 0
        tone[road] = table_uniform(seed, 100, line_u[road], line_v[road])
        mat[median_u | median_v] = LAWN
        carr = carr_u | carr_v | (cross & ~(median_u & median_v) & ((qu < w_u / 2 - sw_u) | (qv < w_v / 2 - sw_v)))
        mat[carr] = ASPHALT
        # Lane markings (not inside junctions): centre/lane lines dashed, edge lines solid.
        def marks(q, w, sw, maj, along):
            dash = (along % 9.0) < 3.0
            lanes = np.zeros(q.shape, bool)
            for n in (1, 2):
                lanes |= maj & (np.abs(q - MEDIAN - n * LANE) < 0.13) & dash
            lanes |= ~maj & (q < 0.13) & dash
            edge = (np.abs(q - (w / 2 - sw - 0.5)) < 0.12) | (maj & (np.abs(q - MEDIAN - 0.4) < 0.12))
            return lanes | edge
        mark = np.zeros(u.shape, bool)
        for on, args in ((carr_u & ~in_v, (qu, w_u, sw_u, maj_u, v)), (carr_v & ~in_u, (qv, w_v, sw_v, maj_v, u))):
            mark[on] |= marks(*(arr[on] for arr in args))
        # Zebra crossings just before the junctions.
        zebra_u = carr_u & ~in_v & (qv > w_v / 2 + 1.0) & (qv < w_v / 2 + 4.0) & ((qu % 1.2) < 0.6)
        zebra_v = carr_v & ~in_u & (qu > w_u / 2 + 1.0) & (qu < w_u / 2 + 4.0) & ((qv % 1.2) < 0.6)
        mark |= zebra_u | zebra_v
        mat[mark] = MARKING
        # Traffic: cars in the lanes, away from junctions.
        for carr, q, off, w, sw, maj, along, line, q_o, w_o, salt in (
                (carr_u, qu, off_u, w_u, sw_u, maj_u, v, line_u, qv, w_v, 102),
                (carr_v, qv, off_v, w_v, sw_v, maj_v, u, line_v, qu, w_u, 103)):
            sel = carr & (q_o > w_o / 2 + 6.0)
            if not sel.any():
                continue
            qs, ms = q[sel], maj[sel]
            half = w[sel] / 2 - sw[sel]
            lane = np.where(ms, np.floor((qs - MEDIAN) / LANE), 0).astype(np.int64)
            centre = np.where(ms, MEDIAN + (lane + 0.5) * LANE, half / 2)
            slot = np.floor(along[sel] / 7.5).astype(np.int64)
            pos = along[sel] - slot * 7.5
            side = (off[sel] > 0).astype(np.int64)
            t = table_uniforms(seed, salt, 2, line[sel], side, lane, slot)
            car = (t[0] < np.where(ms, 0.22, 0.1)) & (np.abs(qs - centre) < 0.95) & (pos > 1.5) & (pos < 6.0)
            idx = np.flatnonzero(sel.ravel())[car]
            mat.reshape(-1)[idx] = CAR
            hgt.reshape(-1)[idx] = 1.5
            tone.reshape(-1)[idx] = t[1][car]
        # Roundabouts at junctions of major roads and at some others.
        r = np.hypot(off_u, off_v)
        rnd = (maj_u & maj_v) | (table_uniform(seed, 101, line_u, line_v) < 0.12)
        r_out = np.maximum(w_u, w_v) / 2 + np.where(maj_u & maj_v, 12.0, 7.0)
        r_in = r_out - np.where(maj_u & maj_v, 10.0, 7.0)
        zone = rnd & (r < r_out + 2.5)
        mat[zone & (r >= r_out)] = np.where(road[zone & (r >= r_out)], SIDEWALK, mat[zone & (r >= r_out)])
        ring = zone & (r < r_out) & (r >= r_in)
        mat[ring] = ASPHALT
        mat[ring & (np.abs(r - (r_in + r_out) / 2) < 0.12) & ((np.arctan2(off_v, off_u) * r) % 6 < 2.5)] = MARKING
        mat[zone & (r < r_out) & (r >= r_out - 0.3)] = SIDEWALK
        island = zone & (r < r_in)
        mat[island] = np.where(r[island] > r_in[island] - 0.7, SIDEWALK, LAWN)
        hgt[zone & (r < r_out + 2.5)] = 0
        c["_road"] = road | zone
        c["_roundabout"] = (zone, r, r_in)

    def _road_palms(self, c, off_u, maj_u, v, off_v, maj_v, u, skip):
        zone, r, r_in = c["_roundabout"]
        sel = np.ones(u.shape, bool)
        pu = maj_u & (np.abs(off_u) < MEDIAN + 1) & ~zone & (np.abs(off_v) > 20) & ~skip
        pv = maj_v & (np.abs(off_v) < MEDIAN + 1) & ~zone & (np.abs(off_u) > 20) & ~skip
        dx = np.where(pu, off_u, off_v)
        along = np.where(pu, v, u)
        dy = (along % 10.0) - 5.0
        self._crown(c, sel, dx, dy, np.float32(2.4), pu | pv, palm=True, height=8.0, ident=np.float32(0.5),
                    x=c["x"], y=c["y"])
        centre = zone & (r < 3.5)
        self._crown(c, sel, off_u, off_v, np.float32(3.2), centre & ~skip, palm=True, height=9.0,
                    ident=np.float32(0.2), x=c["x"], y=c["y"])
