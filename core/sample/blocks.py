"""What the city blocks of the sample scene hold, and the materials everything is made of.

A mixin of :class:`segdeep.sample.layout.Layout`: villa plots, apartment/office blocks, parks,
open desert and construction sites, waterfront promenades, roof clutter, tree crowns. Each method
paints the selected pixels of a window's arrays (``mat`` material, ``hgt`` height in metres,
``tone`` a per-object random value the renderer turns into colour) from the pixels' positions only.
"""

from __future__ import annotations

import numpy as np

from .noise import fbm, table_uniform, table_uniforms, value_noise

# Materials (index into the renderer's palette) and their label class (Dubai classes).
SAND, TRACK, PAVING, WALL, BANK, COPING = 0, 1, 2, 3, 4, 5
ASPHALT, MARKING, SIDEWALK, PARKING, CAR = 6, 7, 8, 9, 10
LAWN, TREE, PALM, SHRUB = 11, 12, 13, 14
WATER, POOL = 15, 16
ROOF, ROOF_EDGE, ROOF_UNIT, ROOF_ROOM, ROOF_TILE = 17, 18, 19, 20, 21
N_MATERIALS = 22
BUILDING, LAND, ROAD, VEGETATION, WATER_CLASS = 0, 1, 2, 3, 4
MATERIAL_CLASS = np.array(
    [LAND, LAND, LAND, LAND, LAND, LAND,
     ROAD, ROAD, LAND, ROAD, ROAD,  # sidewalks count as land, as in the Dubai masks
     VEGETATION, VEGETATION, VEGETATION, VEGETATION,
     WATER_CLASS, WATER_CLASS,
     BUILDING, BUILDING, BUILDING, BUILDING, BUILDING], dtype=np.uint8)

# Cell (city block) uses.
VILLAS, APARTMENTS, PARK, DESERT, WATERFRONT = 0, 1, 2, 3, 4
LANE_W = 8.0                   # service lane inside deep villa blocks (m)


class BlockContents:
    """Painters for block contents; needs ``seed``, ``creek`` and ``from_grid`` of the Layout."""

    def _roof_clutter(self, c):
        """Small boxes (AC units, tanks, vents) scattered on flat roofs, on a 2.5 m grid."""
        roof = c["mat"] == ROOF
        if not roof.any():
            return
        ur, vr = c["u"][roof], c["v"][roof]
        gx, gy = np.floor(ur / 2.5), np.floor(vr / 2.5)
        t = table_uniforms(self.seed, 120, 3, gx.astype(np.int64), gy.astype(np.int64))
        cx = (gx + 0.5) * 2.5 + 0.8 * (t[1] - 0.5)
        cy = (gy + 0.5) * 2.5 + 0.8 * (t[2] - 0.5)
        box = (t[0] < 0.14) & (np.abs(ur - cx) < 0.55) & (np.abs(vr - cy) < 0.45)
        idx = np.flatnonzero(roof.ravel())[box]
        c["mat"].reshape(-1)[idx] = ROOF_UNIT
        c["hgt"].reshape(-1)[idx] += 0.9

    # --- block contents -------------------------------------------------------------------------
    def _villas(self, c, sel):
        seed, mat, hgt, tone = c["seed"], c["mat"], c["hgt"], c["tone"]
        i, k = c["i"][sel], c["k"][sel]
        a, b, big_a, big_b = c["a"][sel], c["b"][sel], c["A"][sel], c["B"][sel]
        long_a = big_a >= big_b
        al, ac = np.where(long_a, a, b), np.where(long_a, b, a)
        bl, bc = np.where(long_a, big_a, big_b), np.where(long_a, big_b, big_a)
        # Deep blocks get a service lane down the middle, with plots facing it.
        split = bc > 90
        half = split & (ac >= bc / 2)
        lane = split & (np.abs(ac - bc / 2) < LANE_W / 2)
        ac = np.where(half, ac - bc / 2 - LANE_W / 2, ac)
        bc = np.where(split, bc / 2 - LANE_W / 2, bc)
        row = (ac >= bc / 2).astype(np.int64) + 2 * half
        depth = bc / 2
        pb = np.where(row % 2 == 1, bc - ac, ac)          # distance from the street
        pw_t = 17 + 9 * table_uniform(seed, 30, i, k)
        n = np.maximum(1, np.floor(bl / pw_t))
        pw = bl / n
        p = np.clip(np.floor(al / pw), 0, n - 1).astype(np.int64)
        pa = al - p * pw
        h = table_uniforms(seed, 40, 12, i, k, row, p)
        mine = np.zeros(a.shape, np.uint8) + SAND
        mh = np.zeros(a.shape, np.float32)
        mt = h[0].copy()
        garden = h[1]
        # Yard surface: paving, lawn or sand.
        mine[:] = np.where(garden < 0.45, PAVING, np.where(garden < 0.68, LAWN, SAND))
        side = 2.2 + 1.6 * h[2]
        front = 4.5 + 3.5 * h[3]
        back = 5.0 + 0.3 * depth * h[4]
        vd = np.maximum(7.0, depth - front - back)
        in_v = (pa > side) & (pa < pw - side) & (pb > front) & (pb < front + vd)
        # L-shaped villas: cut a corner.
        la = (pa - side) / np.maximum(pw - 2 * side, 1)
        lb = (pb - front) / vd
        ca = np.where(h[5] < 0.5, la, 1 - la)
        cb = np.where(h[6] < 0.5, lb, 1 - lb)
        notch = (h[7] > 0.35) & (ca < 0.25 + 0.25 * h[8]) & (cb < 0.3 + 0.2 * h[9])
        in_v &= ~notch
        # Driveway in front of the villa.
        drive = (pb < front) & (np.abs(pa - (side + 3 + (pw - 2 * side - 6) * h[10])) < 2.2)
        mine[drive] = PAVING
        # Pool in the back yard.
        pool_w, pool_l = 3.5 + 1.5 * h[8], 6 + 4 * h[9]
        pc = side + pool_l / 2 + (pw - 2 * side - pool_l) * h[11]
        by = front + vd + back / 2
        pool_a = np.abs(pa - pc)
        pool_b = np.abs(pb - by)
        has_pool = (h[4] > 0.6) & (back > pool_w + 2)
        coping = has_pool & (pool_a < pool_l / 2 + 0.6) & (pool_b < pool_w / 2 + 0.6)
        mine[coping] = COPING
        pool = has_pool & (pool_a < pool_l / 2) & (pool_b < pool_w / 2)
        mine[pool] = POOL
        # Boundary walls with a gate.
        wall = (pa < 0.3) | (pa > pw - 0.3) | (pb > depth - 0.3) | ((pb < 0.3) & ~drive)
        mine[wall] = WALL
        mh[wall] = 2.2
        # Villa: flat roof with parapet, a roof room and AC units; or a hipped tile roof.
        roof_h = 6.5 + 3.5 * h[2]
        mine[in_v] = ROOF
        mh[in_v] = roof_h[in_v]
        pitched = in_v & (mt < 0.35) & (h[7] <= 0.35)
        ridge = np.minimum(np.minimum(pa - side, pw - side - pa), np.minimum(pb - front, front + vd - pb))
        mh[pitched] += np.minimum(0.6 * ridge[pitched], 3.0)
        mine[pitched] = ROOF_TILE
        flat = in_v & ~pitched
        edge = flat & (ridge < 0.5)
        # The cut corner's inner edges get a parapet too.
        notch_a = np.abs(ca - (0.25 + 0.25 * h[8])) * np.maximum(pw - 2 * side, 1) < 0.5
        notch_b = np.abs(cb - (0.3 + 0.2 * h[9])) * vd < 0.5
        edge |= flat & (h[7] > 0.35) & ((notch_a & (cb < 0.3 + 0.2 * h[9])) | (notch_b & (ca < 0.25 + 0.25 * h[8])))
        mine[edge] = ROOF_EDGE
        mh[edge] += 0.6
        rx = (pa - side) - (pw - 2 * side) * (0.25 + 0.5 * h[3])
        ry = (pb - front) - vd * (0.25 + 0.5 * h[10])
        room = flat & ~edge & (np.abs(rx) < 2.2 + 1.0 * h[5]) & (np.abs(ry) < 1.8 + h[6])
        mine[room] = ROOF_ROOM
        mh[room] += 3.0
        for j, (fa, fb) in enumerate(((0.2, 0.7), (0.75, 0.3), (0.6, 0.8))):
            ua = (pa - side) - (pw - 2 * side) * (fa + 0.1 * h[j + 4] - 0.05)
            ub = (pb - front) - vd * fb
            unit = flat & ~edge & ~room & (np.abs(ua) < 0.7) & (np.abs(ub) < 0.5) & (h[j + 8] > 0.3)
            mine[unit] = ROOF_UNIT
            mh[unit] += 1.0
        mat[sel], hgt[sel], tone[sel] = mine, mh, mt
        # Yard trees and palms (after the plot surface).
        x, y = c["x"][sel], c["y"][sel]
        for fa_salt, yard in ((50, "front"), (51, "back"), (52, "back")):
            t = table_uniforms(seed, fa_salt, 4, i, k, row, p)
            rad = 1.6 + 1.6 * t[0]
            cx = rad + 0.6 + (pw - 2 * rad - 1.2) * t[1]
            cy = front * 0.5 if yard == "front" else depth - 0.6 - rad
            present = t[3] < (0.55 if yard == "front" else 0.45)
            self._crown(c, sel, pa - cx, pb - cy, rad, present & (rad < np.maximum(front, 2.5)),
                        palm=t[2] < 0.4, height=5 + 3 * t[0], ident=t[1], x=x, y=y)
        # Plots the creek comes near to become promenade.
        al_c = (p + 0.5) * pw
        ac_c = np.where(row % 2 == 0, depth / 2, bc - depth / 2) + np.where(half, bc + LANE_W, 0)
        pu = c["u0"][sel] + np.where(long_a, al_c, ac_c)
        pv = c["v0"][sel] + np.where(long_a, ac_c, al_c)
        drop = self.creek(*self.from_grid(pu, pv))[0] < 34.0
        if drop.any():
            where = sel.copy()
            where[sel] = drop
            c["hgt"][where] = 0
            self._waterfront(c, where)
        if lane.any():
            idx = np.flatnonzero(sel.ravel())[lane]
            edge = np.abs(np.where(long_a, b, a) - np.where(long_a, big_b, big_a) / 2)[lane] > LANE_W / 2 - 1.2
            mat.reshape(-1)[idx] = np.where(edge, SIDEWALK, ASPHALT)
            hgt.reshape(-1)[idx] = 0
            tone.reshape(-1)[idx] = 0.3

    def _apartments(self, c, sel):
        seed, mat, hgt, tone = c["seed"], c["mat"], c["hgt"], c["tone"]
        i, k = c["i"][sel], c["k"][sel]
        a, b, big_a, big_b = c["a"][sel], c["b"][sel], c["A"][sel], c["B"][sel]
        # Long blocks hold several buildings ("lots") side by side.
        long_a = big_a >= big_b
        length = np.where(long_a, big_a, big_b)
        n = np.maximum(1, np.round(length / (60 + 40 * table_uniform(seed, 59, i, k))))
        lw = length / n
        q = np.clip(np.floor(np.where(long_a, a, b) / lw), 0, n - 1)
        lo = np.where(long_a, a, b) - q * lw
        la, lb = np.where(long_a, lo, a), np.where(long_a, b, lo)
        lot_a, lot_b = np.where(long_a, lw, big_a), np.where(long_a, big_b, lw)
        h = table_uniforms(seed, 60, 10, i, k, q.astype(np.int64))
        m = 6 + 5 * h[0]
        ba, bb = la - m, lb - m
        wa, wb = lot_a - 2 * m, lot_b - 2 * m
        in_b = (ba > 0) & (bb > 0) & (ba < wa) & (bb < wb)
        kind = np.floor(h[1] * 4)
        court = 11 + 5 * h[2]
        hole = (kind == 1) & (ba > court) & (bb > court) & (ba < wa - court) & (bb < wb - court) \
            & (wa > 3 * court) & (wb > 3 * court)
        gap = 14.0
        split = (kind == 2) & np.where(wa > wb, np.abs(ba - wa / 2) < gap / 2, np.abs(bb - wb / 2) < gap / 2)
        lcut = (kind == 3) & (ba > wa * (0.45 + 0.2 * h[3])) & (bb > wb * (0.45 + 0.2 * h[4]))
        in_b &= ~(hole | split | lcut)
        edge_dist = np.minimum(np.minimum(a, b), np.minimum(big_a - a, big_b - b))
        mine = np.where((h[5] < 0.55) & (edge_dist < 17.0), PARKING, PAVING).astype(np.uint8)
        mh = np.zeros(a.shape, np.float32)
        mt = 0.35 + 0.65 * h[6]        # roof colours without the villas' terracotta
        # Parking stalls with cars along the block edges; lawn strip elsewhere.
        park = mine == PARKING
        stall_along = np.where(big_a > big_b, a, b)
        stall_no = np.floor(stall_along / 2.6)
        line = park & ((stall_along % 2.6) < 0.18) & ((np.minimum(a, b) % 40) < 100)
        ident = np.floor(np.minimum(np.minimum(a, b), np.minimum(big_a - a, big_b - b)) / 5.5)
        car_h = table_uniform(seed, 70, i, k, stall_no.astype(np.int64), ident.astype(np.int64))
        depth_in = np.minimum(np.minimum(a, b), np.minimum(big_a - a, big_b - b)) % 5.5
        car = park & ~line & (car_h < 0.6) & (depth_in > 0.5) & (depth_in < 4.9) \
            & (np.abs((stall_along % 2.6) - 1.3) < 0.9) & ~in_b
        mine[line] = MARKING
        mine[car] = CAR
        mh[car] = 1.5
        mt[car] = car_h[car] / 0.6
        strip = ~park & (np.minimum(np.minimum(a, b), np.minimum(big_a - a, big_b - b)) < 3.0)
        mine[strip] = LAWN
        mine[hole] = np.where(h[7][hole] < 0.5, LAWN, PAVING)
        # The building: roof, parapet, stair cores, a field of AC units.
        bh = 14 + 30 * h[8] ** 2
        mine[in_b] = ROOF
        mh[in_b] = bh[in_b]
        e = 0.8
        edge = in_b & ~((ba > e) & (bb > e) & (ba < wa - e) & (bb < wb - e)
                        & ~((kind == 1) & (ba > court - e) & (bb > court - e) & (ba < wa - court + e)
                            & (bb < wb - court + e))
                        & ~((kind == 2) & np.where(wa > wb, np.abs(ba - wa / 2) < gap / 2 + e,
                                                   np.abs(bb - wb / 2) < gap / 2 + e))
                        & ~((kind == 3) & (ba > wa * (0.45 + 0.2 * h[3]) - e) & (bb > wb * (0.45 + 0.2 * h[4]) - e)))
        mine[edge] = ROOF_EDGE
        mh[edge] += 1.0
        inner = in_b & ~edge
        for fa, fb in ((0.2, 0.25), (0.7, 0.65)):
            core = inner & (np.abs(ba - wa * (fa + 0.1 * h[9])) < 3.0) & (np.abs(bb - wb * fb) < 2.5)
            mine[core] = ROOF_ROOM
            mh[core] += 3.5
        grid = inner & (mine == ROOF) & ((ba % 3.2) < 1.6) & ((bb % 2.6) < 1.0) \
            & (np.abs(ba / np.maximum(wa, 1) - 0.5) < 0.2 + 0.2 * h[2]) & (np.abs(bb / np.maximum(wb, 1) - 0.45) < 0.25)
        mine[grid] = ROOF_UNIT
        mh[grid] += 1.2
        mat[sel], hgt[sel], tone[sel] = mine, mh, mt
        # Palms around the lawn strip.
        along = np.where(np.minimum(a, big_a - a) < np.minimum(b, big_b - b), b, a)
        cross = np.minimum(np.minimum(a, b), np.minimum(big_a - a, big_b - b))
        pos = np.floor(along / 9.0)
        ok = ~park & (table_uniform(seed, 71, i, k, pos.astype(np.int64)) < 0.8)
        self._crown(c, sel, (along % 9.0) - 4.5, cross - 1.5, np.float32(2.6), ok, palm=True, height=7.0,
                    ident=h[6], x=c["x"][sel], y=c["y"][sel])

    def _park(self, c, sel):
        seed, mat, tone = c["seed"], c["mat"], c["tone"]
        x, y = c["x"][sel], c["y"][sel]
        i, k = c["i"][sel], c["k"][sel]
        a, b, big_a, big_b = c["a"][sel], c["b"][sel], c["A"][sel], c["B"][sel]
        # Irrigated lawn in patches, the rest sand; paths wind through both.
        grass = fbm(x, y, 70.0, seed, 85, octaves=2) > 0.52
        mine = np.where(grass, LAWN, SAND).astype(np.uint8)
        n = value_noise(x, y, 45.0, seed, 80)
        path = np.abs(n - 0.5) < 0.025
        mine[path] = PAVING
        h = table_uniforms(seed, 81, 4, i, k)
        ex = (a - big_a * (0.3 + 0.4 * h[0])) / (big_a * 0.22)
        ey = (b - big_b * (0.3 + 0.4 * h[1])) / (big_b * 0.2)
        r = np.hypot(ex, ey) + 0.15 * (value_noise(x, y, 9.0, seed, 82) - 0.5)
        pond = (h[2] < 0.5) & (r < 1)
        mine[(h[2] < 0.5) & (r < 1.12) & ~pond] = SAND
        mine[pond] = WATER
        mat[sel] = mine
        tone[sel] = np.where(pond, np.clip((1 - r) * 2, 0, 1), 0.5)
        dens = fbm(x, y, 60.0, seed, 83, octaves=2)
        self._scatter(c, sel, 6.0, 84, (dens > 0.5) & grass & ~pond & (r > 1.2), 1.8, 3.2, palm_share=0.15)

    def _desert(self, c, sel):
        seed, mat, hgt, tone = c["seed"], c["mat"], c["hgt"], c["tone"]
        x, y = c["x"][sel], c["y"][sel]
        mine = np.full(x.shape, SAND, np.uint8)
        mine[self._tracks(x, y)] = TRACK
        mh = np.zeros(x.shape, np.float32)
        mt = np.full(x.shape, 0.3, np.float32)
        # Some plots are construction sites: fence, compacted ground, a slab with columns, site cabins.
        a, b, big_a, big_b = c["a"][sel], c["b"][sel], c["A"][sel], c["B"][sel]
        h = table_uniforms(seed, 99, 5, c["i"][sel], c["k"][sel])
        site = h[0] < 0.45
        edge = np.minimum(np.minimum(a, b), np.minimum(big_a - a, big_b - b))
        inside = site & (edge > 4.0)
        mine[inside] = TRACK
        mt[inside] = 0.0
        fence = site & (np.abs(edge - 4.0) < 0.25)
        mine[fence] = WALL
        mh[fence] = 2.0
        m = 14 + 12 * h[1]
        slab = inside & (edge > m)
        mine[slab] = PAVING
        mt[slab] = 0.7
        cols = slab & ((a - m) % 6.0 < 0.6) & ((b - m) % 6.0 < 0.6) & (edge > m + 1)
        mine[cols] = WALL
        mh[cols] = 2.0 + 10 * h[2][cols]
        cabin_a = a - (6 + 20 * h[3])
        for j in range(3):
            cab = inside & ~slab & (np.abs(cabin_a - 4.0 * j) < 1.4) & (np.abs(b - 9.0) < 4.5)
            mine[cab] = ROOF
            mh[cab] = 3.0
            mt[cab] = 0.42 + 0.1 * h[4][cab]
        mat[sel], hgt[sel], tone[sel] = mine, mh, mt
        self._scatter(c, sel, 9.0, 94, ~site & (value_noise(x, y, 80.0, seed, 95) > 0.55), 0.6, 1.3, shrub=True)

    def _tracks(self, x, y):
        """Vehicle tracks across open sand: thin level lines of two warped noise fields."""
        n1 = value_noise(x, y, 70.0, self.seed, 90) + 0.2 * value_noise(x, y, 9.0, self.seed, 91)
        n2 = value_noise(x, y, 110.0, self.seed, 92) + 0.2 * value_noise(x, y, 13.0, self.seed, 93)
        return (np.abs(n1 - 0.6) < 0.012) | (np.abs(n2 - 0.55) < 0.01)

    def _waterfront(self, c, sel):
        mat, tone = c["mat"], c["tone"]
        d = c["creek"][sel]
        x, y = c["x"][sel], c["y"][sel]
        mine = np.full(d.shape, SAND, np.uint8)
        mine[d < 14] = PAVING
        lawn = (d >= 14) & (d < 30) & (value_noise(x, y, 50.0, c["seed"], 96) > 0.35)
        mine[lawn] = LAWN
        mine[(mine == SAND) & self._tracks(x, y)] = TRACK
        mat[sel] = mine
        tone[sel] = 0.5
        ring = np.abs(d - 8.0)
        along = c["u"][sel] + c["v"][sel]
        self._crown(c, sel, (along % 11.0) - 5.5, ring, np.float32(2.6), ring < 3.0, palm=True, height=7.0,
                    ident=np.float32(0.3), x=x, y=y)
        self._scatter(c, sel, 7.0, 97, lawn & (d > 18), 1.8, 3.0, palm_share=0.3)
        self._scatter(c, sel, 9.0, 94, (mine == SAND) & (d > 35) & (value_noise(x, y, 80.0, c["seed"], 95) > 0.6),
                      0.6, 1.3, shrub=True)

    # --- vegetation ---------------------------------------------------------------------------
    def _crown(self, c, sel, dx, dy, radius, present, palm, height, ident, x, y):
        """Paint tree crowns centred (dx, dy) = (0, 0) in some local frame (m) on the selected pixels."""
        rr = np.hypot(dx, dy) / radius
        cand = present & (rr < 1.0)
        if not cand.any():
            return
        rr = rr[cand]
        pal = np.broadcast_to(palm, cand.shape)[cand]
        ang = np.arctan2(dy[cand], dx[cand])
        ident = np.broadcast_to(ident, cand.shape)[cand]
        wobble = 0.8 + 0.2 * value_noise(x[cand], y[cand], 0.9, self.seed, 110)
        frond = 0.45 + 0.55 * np.abs(np.cos(4.5 * ang + 6.28 * ident)) ** 0.6
        inside = rr < np.where(pal, frond, wobble)
        idx = np.flatnonzero(sel.ravel())[np.flatnonzero(cand.ravel())[inside]]
        mat, hgt, tone = (c[n].reshape(-1) for n in ("mat", "hgt", "tone"))
        mat[idx] = np.where(pal[inside], PALM, TREE)
        h = np.broadcast_to(height, cand.shape)[cand][inside]
        q = rr[inside]
        dome = h * (0.7 + 0.3 * np.sqrt(np.clip(1 - q * q, 0, 1)))
        hgt[idx] = np.maximum(hgt[idx], dome.astype(np.float32))
        tone[idx] = ident[inside]

    def _scatter(self, c, sel, spacing, salt, density, rmin, rmax, palm_share=0.0, shrub=False):
        """Scatter tree crowns on a jittered global grid of ``spacing`` metres where ``density``."""
        x, y = c["x"][sel], c["y"][sel]
        gx, gy = np.floor(x / spacing).astype(np.int64), np.floor(y / spacing).astype(np.int64)
        t = table_uniforms(self.seed, salt, 4, gx, gy)
        rad = rmin + (rmax - rmin) * t[0]
        room = spacing / 2 - rad
        cx = (gx + 0.5) * spacing + room * (2 * t[1] - 1)
        cy = (gy + 0.5) * spacing + room * (2 * t[2] - 1)
        present = density & (t[3] < 0.8)
        if shrub:
            dx, dy = x - cx, y - cy
            rr = np.hypot(dx, dy) / rad * (0.85 + 0.3 * value_noise(x, y, 0.7, self.seed, 111))
            inside = present & (rr < 1)
            idx = np.flatnonzero(sel.ravel())[inside.ravel()]
            c["mat"].reshape(-1)[idx] = SHRUB
            c["hgt"].reshape(-1)[idx] = (1.2 * np.sqrt(np.clip(1 - rr * rr, 0.05, 1)))[inside]
            return
        self._crown(c, sel, x - cx, y - cy, rad.astype(np.float32), present, palm=t[1] < palm_share,
                    height=(5 + 4 * t[0]).astype(np.float32), ident=t[2], x=x, y=y)
