"""Check the layout of a jaxgap report page in headless Chromium, and take a screenshot.

A developer tool, not a dependency of jaxgap: it needs a Chromium (or Chrome) binary and
the Python standard library only. Run it on the page of a real run:

    apt-get install -y chromium                      # Debian's package (or any Chrome)
    .venv/bin/jaxgap reproduce --quick --out /tmp/rq   # about a minute on 2 cores
    .venv/bin/python scripts/check_report_page.py /tmp/rq/report.html \\
        --screenshot docs/report_page.png --screenshot-height 1800

The page is rendered in a window ``--width`` CSS pixels wide (default 1280, at device scale
factor 1) and these are checked:

1. Size: every figure (``<img>``) is shown at least at its drawn size, never shrunk to fit:
   its rendered width is at least 98% of its pixel width x 96 / dpi (the dpi read from the
   PNG's ``pHYs`` chunk; a PNG without one counts at 1 pixel per CSS pixel). Where it is
   wider than its box, the box scrolls sideways (``overflow-x: auto`` or ``scroll``).
2. Text: the smallest text of every figure is at least ``--min-text-px`` CSS pixels
   (default 9) on screen: the smallest font size of the figure in points (written by jaxgap
   into the PNG as the tEXt entry ``jaxgap:smallest-font-pt``) x dpi / 72 x the rendered
   width / the pixel width. A figure without that entry fails this check.
3. Page: the page itself does not scroll sideways, and every element that reaches past the
   window's edges lies inside a box that scrolls sideways and itself fits the window.

The PNGs are read here, independently of jaxgap; the layout is measured by a small script
injected into a temporary copy of the page (the page itself holds none), whose results
Chromium writes into the DOM it dumps (``--dump-dom``). The screenshot is taken of the page
as it is. Prints one line per figure and the page's numbers; exit status 0 when every check
passes, 1 when one fails, 2 on bad arguments or when Chromium cannot be run.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

FONT_KEY = "jaxgap:smallest-font-pt"
CSS_DPI = 96.0
MARKER = "__check_report_page__"

_MEASURE = """
<script>
window.addEventListener("load", () => {
  const vw = document.documentElement.clientWidth;
  const scroller = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox === "auto" || ox === "scroll") return a;
    }
    return null;
  };
  const images = Array.from(document.images).map((im) => {
    const r = im.getBoundingClientRect();
    const box = scroller(im);
    return {natural_width: im.naturalWidth, natural_height: im.naturalHeight,
            width: r.width, height: r.height, scrollable: box !== null,
            box_width: box ? box.clientWidth : document.documentElement.clientWidth};
  });
  const over = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || (r.right <= vw + 0.5 && r.left >= -0.5)) continue;
    const box = scroller(el);
    const fits = box && box.getBoundingClientRect().right <= vw + 0.5
                 && box.getBoundingClientRect().left >= -0.5;
    if (!fits) over.push(el.tagName.toLowerCase() + (el.className ? "." + el.className : ""));
  }
  const doc = document.documentElement;
  const out = {viewport_width: vw, page_width: doc.scrollWidth, page_height: doc.scrollHeight,
               images: images, overflowing: over};
  const pre = document.createElement("pre");
  pre.id = "MARKER";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
""".replace("MARKER", MARKER)


def png_facts(data: bytes) -> dict:
    """Pixel size, dpi (None without ``pHYs``) and tEXt entries of a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    dpi, text, pos = None, {}, 8
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if kind == b"pHYs" and len(body) == 9 and body[8] == 1:
            dpi = struct.unpack(">I", body[:4])[0] * 0.0254 or None
        elif kind == b"tEXt" and b"\0" in body:
            key, value = body.split(b"\0", 1)
            text[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"IEND":
            break
        pos += 12 + size
    return {"width": width, "height": height, "dpi": dpi, "text": text}


def find_chromium(given: str | None) -> str:
    for name in ([given] if given else ["chromium", "chromium-browser", "google-chrome",
                                         "google-chrome-stable", "chrome"]):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise SystemExit("check_report_page: no Chromium found; install it (apt-get install -y "
                     "chromium) or pass --chromium PATH")


def run_chromium(chromium: str, args: list[str], profile: str, timeout: float) -> str:
    cmd = [chromium, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--force-device-scale-factor=1", f"--user-data-dir={profile}",
           "--virtual-time-budget=15000", *args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise SystemExit(f"check_report_page: {chromium} failed ({res.returncode}): "
                         f"{res.stderr.strip()[-2000:]}")
    return res.stdout


def measure(chromium: str, page: Path, width: int, timeout: float) -> dict:
    """The layout numbers of ``page`` rendered ``width`` CSS pixels wide."""
    text = page.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise SystemExit(f"check_report_page: {page} has no </body>")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(text.replace("</body>", _MEASURE + "</body>", 1), encoding="utf-8")
        dom = run_chromium(chromium, [f"--window-size={width},1000", "--dump-dom",
                                      probe.as_uri()], str(Path(tmp) / "profile"), timeout)
    found = re.search(rf'<pre id="{MARKER}">(.*?)</pre>', dom, re.S)
    if not found:
        raise SystemExit("check_report_page: the measuring script left no result (did the "
                         "page load?)")
    return json.loads(html.unescape(found.group(1)))


def screenshot(chromium: str, page: Path, out: Path, width: int, height: int,
               timeout: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        run_chromium(chromium, [f"--window-size={width},{height}", f"--screenshot={shot}",
                                page.resolve().as_uri()], str(Path(tmp) / "profile"), timeout)
        shutil.copyfile(shot, out)


def check(page: Path, layout: dict, min_text_px: float) -> list[str]:
    """The failures (empty: all checks pass); prints one line per figure."""
    text = page.read_text(encoding="utf-8")
    pngs = [base64.b64decode(m) for m in
            re.findall(r'<img\b[^>]*?\bsrc="data:image/png;base64,([^"]*)"', text)]
    images = layout["images"]
    failures = []
    if len(pngs) != len(images):
        failures.append(f"the page shows {len(images)} images, {len(pngs)} of them are "
                        "embedded PNGs")
    print(f"{'figure':>6} {'pixels':>11} {'dpi':>5} {'drawn':>6} {'shown':>7} {'box':>6} "
          f"{'scrolls':>7} {'font pt':>7} {'text px':>7}")
    for i, (data, im) in enumerate(zip(pngs, images, strict=False)):
        facts = png_facts(data)
        dpi = facts["dpi"]
        drawn = facts["width"] * (CSS_DPI / dpi if dpi else 1.0)
        shown = im["width"]
        scale = shown / facts["width"]
        pt = facts["text"].get(FONT_KEY)
        text_px = float(pt) * (dpi or CSS_DPI) / 72.0 * scale if pt else None
        wider = shown > im["box_width"] + 0.5
        print(f"{i + 1:>6} {facts['width']:>5}x{facts['height']:<5} "
              f"{dpi or 0:>5.0f} {drawn:>6.0f} {shown:>7.1f} {im['box_width']:>6.0f} "
              f"{'yes' if im['scrollable'] else 'no':>7} {pt or '-':>7} "
              f"{'-' if text_px is None else f'{text_px:.1f}':>7}")
        if shown < 0.98 * drawn:
            failures.append(f"figure {i + 1}: shown {shown:.0f} CSS px wide, below its drawn "
                            f"size {drawn:.0f} px (shrunk to {shown / drawn:.0%})")
        if wider and not im["scrollable"]:
            failures.append(f"figure {i + 1}: {shown:.0f} px wide in a {im['box_width']} px "
                            "box that does not scroll sideways")
        if text_px is None:
            failures.append(f"figure {i + 1}: no {FONT_KEY!r} entry in the PNG: its text size "
                            "is unknown")
        elif text_px < min_text_px:
            failures.append(f"figure {i + 1}: smallest text {text_px:.1f} CSS px on screen "
                            f"(< {min_text_px:g}): {pt} pt at {dpi or CSS_DPI:.0f} dpi shown "
                            f"at {scale:.2f} x")
    vw, pw = layout["viewport_width"], layout["page_width"]
    print(f"page: window {vw} CSS px wide, page {pw} x {layout['page_height']} px, "
          f"{len(layout['overflowing'])} element(s) past the window's edges outside a "
          "scrolling box")
    if pw > vw:
        failures.append(f"the page scrolls sideways: {pw} px wide in a {vw} px window")
    if layout["overflowing"]:
        failures.append("elements past the window's edges outside a scrolling box: "
                        + ", ".join(layout["overflowing"][:10]))
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the report.html to check")
    parser.add_argument("--width", type=int, default=1280,
                        help="window width in CSS pixels (default: 1280)")
    parser.add_argument("--min-text-px", type=float, default=9.0,
                        help="smallest text allowed in a figure, CSS pixels (default: 9)")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="write a PNG screenshot of the page here")
    parser.add_argument("--screenshot-height", type=int, default=None,
                        help="screenshot this many CSS pixels from the top (default: the "
                             "whole page)")
    parser.add_argument("--chromium", default=None, help="the Chromium or Chrome binary")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds for each Chromium run (default: 120)")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        parser.error(f"page: no such file {str(args.page)!r}")
    if args.width < 320 or (args.screenshot_height is not None and args.screenshot_height < 1):
        parser.error("--width: expected >= 320; --screenshot-height: expected >= 1")
    chromium = find_chromium(args.chromium)
    layout = measure(chromium, args.page, args.width, args.timeout)
    failures = check(args.page, layout, args.min_text_px)
    if args.screenshot is not None:
        height = args.screenshot_height or int(layout["page_height"])
        screenshot(chromium, args.page, args.screenshot, args.width, height, args.timeout)
        print(f"screenshot: {args.screenshot} ({args.width} x {height} CSS px, "
              f"{args.screenshot.stat().st_size / 1024:.0f} KiB)")
    for f in failures:
        print(f"FAIL: {f}")
    print("OK: every check passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
