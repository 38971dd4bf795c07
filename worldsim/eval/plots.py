"""Line plots as PNG with PIL alone (no matplotlib): one metric against horizon or scheme."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
SIZE = (640, 400)
MARGIN = (70, 40, 170, 50)  # left, top, right (legend), bottom
MAX_X_TICKS = 8  # more distinct x values than this (a learning curve) get evenly spaced ticks instead


def line_plot(path: str | Path, title: str, x_label: str, y_label: str,
              series: dict[str, tuple[list[float], list[float | None]]], log_x: bool = False,
              x_ticks: list[str] | None = None) -> Path:
    """Draw `series` {name: (xs, ys)} as lines with markers and save a PNG.

    None or non-finite ys are left out. `x_ticks` labels xs = 0, 1, ... with names (categorical x).
    """
    img = Image.new("RGB", SIZE, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, top, right, bottom = MARGIN
    x0, y0, x1, y1 = left, top, SIZE[0] - right, SIZE[1] - bottom
    fx = (lambda v: math.log2(v)) if log_x else (lambda v: float(v))
    pts = [(fx(x), float(y)) for xs, ys in series.values() for x, y in zip(xs, ys)
           if y is not None and math.isfinite(y)]
    d.text((x0, 10), title, fill="black", font=font)
    d.rectangle([x0, y0, x1, y1], outline="black")
    if pts:
        lo_x, hi_x = min(p[0] for p in pts), max(p[0] for p in pts)
        lo_y, hi_y = min(p[1] for p in pts), max(p[1] for p in pts)
        if hi_x == lo_x:
            lo_x, hi_x = lo_x - 1, hi_x + 1
        pad = (hi_y - lo_y) * 0.08 or max(abs(hi_y) * 0.05, 1e-3)
        lo_y, hi_y = lo_y - pad, hi_y + pad

        def to_px(x: float, y: float) -> tuple[float, float]:
            return (x0 + (x - lo_x) / (hi_x - lo_x) * (x1 - x0), y1 - (y - lo_y) / (hi_y - lo_y) * (y1 - y0))

        for i in range(5):  # y grid and labels
            v = lo_y + (hi_y - lo_y) * i / 4
            _, py = to_px(lo_x, v)
            d.line([x0, py, x1, py], fill=(225, 225, 225))
            d.text((5, py - 6), f"{v:.3g}", fill="black", font=font)
        xs_all = sorted({x for xs, _ in series.values() for x in xs})
        if x_ticks is None and not log_x and len(xs_all) > MAX_X_TICKS:  # a continuous axis: a few round ticks
            xs_all = [lo_x + (hi_x - lo_x) * i / (MAX_X_TICKS - 1) for i in range(MAX_X_TICKS)]
        for x in xs_all:
            px, _ = to_px(fx(x), lo_y)
            label = x_ticks[int(x)] if x_ticks is not None else f"{x:.3g}"
            d.line([px, y1, px, y1 + 4], fill="black")
            d.text((px - 3 * len(label), y1 + 8), label, fill="black", font=font)
        for i, (name, (xs, ys)) in enumerate(series.items()):
            colour = COLOURS[i % len(COLOURS)]
            line = [to_px(fx(x), float(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
            if len(line) > 1:
                d.line(line, fill=colour, width=2)
            for px, py in line:
                d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            d.rectangle([x1 + 10, y0 + 18 * i + 4, x1 + 22, y0 + 18 * i + 14], fill=colour)
            d.text((x1 + 28, y0 + 18 * i + 3), name, fill="black", font=font)
    else:
        d.text(((x0 + x1) // 2 - 30, (y0 + y1) // 2), "no data", fill="black", font=font)
    d.text(((x0 + x1) // 2 - 3 * len(x_label), SIZE[1] - 20), x_label, fill="black", font=font)
    d.text((5, top - 16), y_label, fill="black", font=font)
    path = Path(path)
    img.save(path)
    return path


def bar_plot(path: str | Path, title: str, value_label: str, categories: list[str],
             series: dict[str, list[float]], errors: dict[str, list[tuple[float, float]]] | None = None) -> Path:
    """Grouped horizontal bars: one row per category, one bar per series in it; save a PNG.

    `series` {name: values, one per category}, all >= 0; `errors` {name: [(lo, hi), ...]} draws
    interval whiskers where given. Rows grow the image, so 20+ categories stay readable.
    """
    if any(len(v) != len(categories) for v in series.values()):
        raise ValueError(f"every series needs one value per category ({len(categories)})")
    font = ImageFont.load_default()
    label_w, bar_h, pad = 6 * max((len(c) for c in categories), default=4) + 12, 6, 6
    row_h = bar_h * max(len(series), 1) + pad
    left, top, right, bottom = label_w, 40, 170, 40
    width, height = 640 + label_w - 70, top + row_h * len(categories) + bottom
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    hi = max([v for vs in series.values() for v in vs] + [hi for es in (errors or {}).values() for _, hi in es] + [1e-9])
    to_px = lambda v: x0 + max(v, 0.0) / hi * (x1 - x0)  # noqa: E731
    d.text((x0, 10), title, fill="black", font=font)
    for i in range(5):  # value grid and labels
        v = hi * i / 4
        d.line([to_px(v), y0, to_px(v), y1], fill=(225, 225, 225))
        d.text((to_px(v) - 8, y1 + 6), f"{v:.2g}", fill="black", font=font)
    for r, category in enumerate(categories):
        ry = y0 + r * row_h + pad // 2
        d.text((5, ry + row_h // 2 - 8), category, fill="black", font=font)
        for j, (name, values) in enumerate(series.items()):
            colour, by = COLOURS[j % len(COLOURS)], ry + j * bar_h
            d.rectangle([x0, by, to_px(values[r]), by + bar_h - 1], fill=colour)
            if errors and name in errors:
                lo, up = errors[name][r]
                d.line([to_px(lo), by + bar_h // 2, to_px(up), by + bar_h // 2], fill="black")
    d.rectangle([x0, y0, x1, y1], outline="black")
    for j, name in enumerate(series):
        d.rectangle([x1 + 10, y0 + 18 * j + 4, x1 + 22, y0 + 18 * j + 14], fill=COLOURS[j % len(COLOURS)])
        d.text((x1 + 28, y0 + 18 * j + 3), name, fill="black", font=font)
    d.text(((x0 + x1) // 2 - 3 * len(value_label), height - 18), value_label, fill="black", font=font)
    path = Path(path)
    img.save(path)
    return path
