"""A small bilingual set: product titles in English with their Chinese translations.

Stationery, art supplies and office items, written for the multilingual encoder's tests and
benchmark: a multilingual encoder should put each title next to its translation.
"""

from __future__ import annotations

import numpy as np

# (English title, Chinese title), one product per row
TITLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("Red stapler, heavy duty, staples 20 sheets", "红色订书机，重型，可订20页"),
    ("Black gel ink pens, 0.5 mm, pack of 12", "黑色中性笔 0.5毫米 12支装"),
    ("Watercolor paint set, 24 colors, with brush", "水彩颜料套装 24色 附画笔"),
    ("A4 copy paper, 500 sheets", "A4复印纸 500张"),
    ("Spiral notebook, lined, 100 pages", "螺旋装订笔记本 横线 100页"),
    ("Yellow sticky notes, 3 x 3 inch", "黄色便利贴 3x3英寸"),
    ("Acrylic paint tubes for canvas painting", "丙烯颜料 管装 画布绘画用"),
    ("Colored pencils, 48 colors, for adult coloring books", "彩色铅笔 48色 成人涂色书用"),
    ("Stainless steel scissors for office and school", "不锈钢剪刀 办公室和学校用"),
    ("Wooden desk organizer with drawers", "带抽屉的木制桌面收纳盒"),
    ("Whiteboard markers, assorted colors, dry erase", "白板笔 多色 可擦"),
    ("Sketchbook for drawing, 80 sheets", "素描本 80页"),
    ("Paper clips, 100 pieces, silver metal", "回形针 100枚 银色金属"),
    ("Oil pastels, 36 colors", "油画棒 36色"),
    ("Transparent adhesive tape with dispenser", "透明胶带 带胶带座"),
    ("Calligraphy brush pen set", "书法毛笔套装"),
    ("Three-hole punch for ring binders", "三孔打孔机 活页夹用"),
    ("Mechanical pencil 0.7 mm with erasers", "自动铅笔 0.7毫米 附橡皮"),
    ("Hanging file folders, 25 pack", "悬挂式文件夹 25个装"),
    ("Adjustable wooden easel for canvas painting", "可调节木制画架 画布绘画用"),
)


def english() -> list[str]:
    """The English titles, in pair order."""
    return [en for en, _ in TITLE_PAIRS]


def chinese() -> list[str]:
    """The Chinese titles, in pair order."""
    return [zh for _, zh in TITLE_PAIRS]


def top1_accuracy(queries: np.ndarray, candidates: np.ndarray) -> float:
    """Share of rows ``i`` of ``queries [n, d]`` whose most similar row of ``candidates
    [n, d]`` (dot product; the vectors are normalised) is row ``i``."""
    return float(np.mean((queries @ candidates.T).argmax(axis=1) == np.arange(len(queries))))
