"""Colours, textures, cast shadows and sensor effects for the sample scene.

Colours imitate the Dubai aerial images (MBRSC, CC0): bright, slightly cool pale sand, dark grey
asphalt, light roofs with strong texture, dark green vegetation and very dark water (statistics
measured from the images and their masks). The sun stands in the south-east at 58 degrees, so
shadows fall to the north-west, all in the same direction.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from . import blocks as M
from .layout import Layout
from .noise import fbm, pixel_noise, value_noise

SUN = (0.6, 0.8)                       # direction towards the sun in the image (x right, y down)
SUN_ELEVATION = math.radians(58.0)
MAX_HEIGHT = 46.0                      # tallest object (m): sets the halo for shadows
SHADOW_TINT = np.array([0.33, 0.37, 0.47], np.float32)

# Base colour (R, G, B) and texture strengths (fine, medium) per material.
BASE = np.zeros((M.N_MATERIALS, 3), np.float32)
FINE = np.zeros(M.N_MATERIALS, np.float32)
MEDIUM = np.zeros(M.N_MATERIALS, np.float32)
for _m, _rgb, _f, _md in (
    (M.SAND, (204, 196, 186), 0.06, 0.10), (M.TRACK, (178, 171, 164), 0.05, 0.06),
    (M.PAVING, (186, 180, 172), 0.04, 0.05), (M.WALL, (222, 216, 204), 0.03, 0.02),
    (M.BANK, (160, 156, 148), 0.16, 0.06), (M.COPING, (226, 224, 216), 0.02, 0.0),
    (M.ASPHALT, (78, 76, 79), 0.07, 0.06), (M.MARKING, (226, 226, 220), 0.03, 0.03),
    (M.SIDEWALK, (170, 166, 162), 0.05, 0.04), (M.PARKING, (100, 98, 100), 0.06, 0.05),
    (M.CAR, (200, 200, 200), 0.02, 0.0),
    (M.LAWN, (72, 84, 64), 0.10, 0.12), (M.TREE, (42, 52, 44), 0.22, 0.08),
    (M.PALM, (60, 70, 56), 0.20, 0.05), (M.SHRUB, (98, 100, 74), 0.15, 0.05),
    (M.WATER, (15, 22, 19), 0.05, 0.10), (M.POOL, (64, 160, 178), 0.02, 0.03),
    (M.ROOF, (210, 206, 198), 0.10, 0.10), (M.ROOF_EDGE, (222, 220, 214), 0.03, 0.02),
    (M.ROOF_UNIT, (188, 192, 196), 0.05, 0.0), (M.ROOF_ROOM, (200, 196, 188), 0.04, 0.02),
    (M.ROOF_TILE, (168, 100, 78), 0.08, 0.05),
):
    BASE[_m], FINE[_m], MEDIUM[_m] = _rgb, _f, _md

ROOF_COLOURS = np.array([
    (168, 100, 78), (196, 180, 156), (150, 92, 74), (204, 194, 174),   # villas only (tone < 0.35)
    (226, 224, 218), (210, 204, 190), (184, 184, 184), (160, 160, 162), (140, 146, 154),
    (206, 206, 206), (112, 110, 108), (176, 168, 156), (146, 140, 130), (96, 98, 102),
], np.float32)
CAR_COLOURS = np.array([
    (235, 235, 235), (240, 240, 238), (190, 192, 196), (40, 40, 44), (120, 122, 126),
    (150, 30, 30), (40, 60, 120), (210, 200, 180),
], np.float32)
SHALLOW = np.array([42, 50, 42], np.float32)


def halo_pixels(gsd: float) -> int:
    """Pixels of context a window needs on each side so shadows and blurs match the whole scene."""
    return int(math.ceil(MAX_HEIGHT / math.tan(SUN_ELEVATION) / gsd)) + 8


def cast_shadows(hgt: np.ndarray, gsd: float) -> np.ndarray:
    """Boolean shadow mask from a height map (m): a pixel is shadowed when something between it and
    the sun rises above the sun's ray."""
    h, w = hgt.shape
    best = np.full(hgt.shape, -np.inf, np.float32)
    rise = gsd * math.tan(SUN_ELEVATION)
    top = float(hgt.max()) if hgt.size else 0.0
    for step in range(1, int(math.ceil(top / rise)) + 1):
        ox, oy = int(round(step * SUN[0])), int(round(step * SUN[1]))
        if ox >= w or oy >= h:
            break
        view = best[: h - oy, : w - ox]
        np.maximum(view, hgt[oy:, ox:] - np.float32(step * rise), out=view)
    return best > hgt + 0.25


def colour(ctx: dict, cols: np.ndarray, rows: np.ndarray, gsd: float, seed: int) -> np.ndarray:
    """RGB float image (h x w x 3, 0-255 scale) for a laid-out window (see Layout.build)."""
    mat, hgt, tone = ctx["mat"], ctx["hgt"], ctx["tone"]
    x, y = ctx["x"], ctx["y"]
    img = BASE[mat].copy()
    # Per-object colours.
    roofish = (mat == M.ROOF) | (mat == M.ROOF_EDGE) | (mat == M.ROOF_ROOM) | (mat == M.ROOF_TILE)
    if roofish.any():
        ri = np.minimum((tone[roofish] * len(ROOF_COLOURS)).astype(int), len(ROOF_COLOURS) - 1)
        factor = np.select([mat[roofish] == M.ROOF_EDGE, mat[roofish] == M.ROOF_ROOM], [1.07, 0.93], 1.0)
        img[roofish] = np.minimum(ROOF_COLOURS[ri] * factor[:, None], 250)
    car = mat == M.CAR
    if car.any():
        ci = np.minimum((tone[car] * len(CAR_COLOURS)).astype(int), len(CAR_COLOURS) - 1)
        img[car] = CAR_COLOURS[ci]
    water = mat == M.WATER
    if water.any():
        t = tone[water][:, None]
        img[water] = SHALLOW * (1 - t) + BASE[M.WATER] * t
    # Sand: two tones mixed by large-scale noise, plus darker patches of compacted ground.
    sand = (mat == M.SAND) | (mat == M.TRACK)
    if sand.any():
        n = fbm(x[sand], y[sand], 160.0, seed, 200, octaves=3)
        warm = np.array([222, 214, 202], np.float32)
        grey = np.array([190, 187, 184], np.float32)
        xs, ys = x[sand], y[sand]
        patches = 1 + 0.16 * (fbm(xs, ys, 40.0, seed, 206, octaves=3) - 0.5)
        grit = value_noise(xs, ys, 0.6, seed, 207)
        dots = np.where(grit < 0.06, 0.82, np.where(grit > 0.95, 1.06, 1.0))
        img[sand] = (img[sand] / BASE[M.SAND]) * (warm * n[:, None] + grey * (1 - n[:, None])) \
            * (patches * dots)[:, None]
    if roofish.any():  # slab seams and stains on roofs
        us, vs = ctx["u"][roofish], ctx["v"][roofish]
        seam = ((us % 6.0) < 0.3) | ((vs % 6.0) < 0.3)
        img[roofish] *= np.where(seam, 0.93, 1.0)[:, None]
    compact = (mat == M.TRACK) & (tone == 0)
    img[compact] *= np.array([0.8, 0.79, 0.78], np.float32)
    road_tone = (mat == M.ASPHALT) | (mat == M.SIDEWALK)
    img[road_tone] *= (0.9 + 0.2 * tone[road_tone])[:, None]
    lawn = mat == M.LAWN
    if lawn.any():
        stripes = 1 + 0.05 * np.sign(np.sin(ctx["u"][lawn] * (math.pi / 2.5)))
        dry = value_noise(x[lawn], y[lawn], 14.0, seed, 201)[:, None]
        img[lawn] = img[lawn] * stripes[:, None] * (1 - 0.4 * dry) \
            + np.array([150, 140, 100], np.float32) * 0.4 * dry
    crowns = (mat == M.TREE) | (mat == M.PALM) | (mat == M.SHRUB)
    gy, gx = np.gradient(hgt)
    slope = (gx * SUN[0] + gy * SUN[1]) / gsd   # rise towards the sun (m/m): < 0 on sunlit faces
    if crowns.any():  # crowns lit from the sun's side (hill shading of the crown's height)
        lit = 0.85 - 0.3 * np.clip(slope[crowns], -1.5, 1.5)
        img[crowns] *= ((0.85 + 0.3 * tone[crowns]) * lit)[:, None]
    pitched = (mat == M.ROOF_TILE) & (np.abs(slope) < 1.5)
    img[pitched] *= (1 - 0.35 * slope[pitched])[:, None]
    # Textures: medium-scale mottling and fine grain, per material strength.
    medium = fbm(x, y, 18.0, seed, 202, octaves=3) - 0.5
    fine = value_noise(x, y, 0.9, seed, 203) - 0.5
    img *= (1 + 2 * MEDIUM[mat] * medium + 2 * FINE[mat] * fine)[..., None]
    ripples = value_noise(x * 0.3 + y * 0.95, x * 0.95 - y * 0.3, 2.5, seed, 204) - 0.5
    img[water | (mat == M.POOL)] *= (1 + 0.25 * ripples[water | (mat == M.POOL)])[:, None]
    # Shadows (soft-edged), then ambient occlusion at the foot of tall things.
    shadow = cast_shadows(hgt, gsd).astype(np.float32)
    shadow = ndimage.gaussian_filter(shadow, 0.6, truncate=3.0)
    img *= 1 - shadow[..., None] * (1 - SHADOW_TINT)
    around = ndimage.gaussian_filter(hgt, 2.0 / gsd, truncate=3.0)
    img *= (1 - np.clip((around - hgt) / 25.0, 0, 0.18))[..., None]
    # Sensor: slight haze and cool cast, optical blur, noise.
    img = img * 0.9 + np.array([16, 16, 19], np.float32)
    for ch in range(3):
        img[..., ch] = ndimage.gaussian_filter(img[..., ch], 0.55, truncate=3.0)
    img += 5.0 * pixel_noise(cols, rows, seed, 205)
    return img


def render(layout: Layout, col_off: int, row_off: int, width: int, height: int, gsd: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Image (3 x height x width uint8) and labels (height x width uint8) of one window (pixels)."""
    pad = halo_pixels(gsd)
    rows = np.arange(row_off - pad, row_off + height + pad, dtype=np.int64)[:, None]
    cols = np.arange(col_off - pad, col_off + width + pad, dtype=np.int64)[None, :]
    # float32 metres: exact enough (< 1 cm) for scenes up to ~100 km across.
    x = np.broadcast_to(((cols + 0.5) * gsd).astype(np.float32), (rows.size, cols.size)).copy()
    y = np.broadcast_to(((rows + 0.5) * gsd).astype(np.float32), (rows.size, cols.size)).copy()
    ctx = layout.build(x, y)
    img = colour(ctx, cols, rows, gsd, layout.seed)
    crop = (slice(pad, pad + height), slice(pad, pad + width))
    rgb = np.clip(np.rint(img[crop]), 0, 255).astype(np.uint8)
    labels = M.MATERIAL_CLASS[ctx["mat"][crop]]
    return np.ascontiguousarray(np.moveaxis(rgb, -1, 0)), labels
