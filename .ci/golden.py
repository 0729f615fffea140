"""Re-execute notebooks at their smoke parameters and keep small outputs (the nbval goldens).

    HANDLIB_RESULTS=.cache/test-results .venv/bin/python .ci/golden.py notebooks/02_pretrain.ipynb

Keeps stdout streams, the text/plain of results and displays (reprs; tables also as HTML,
Markdown as Markdown) and figures as small PNGs (a figure over MAX_PNG bytes of base64 is scaled
down until it fits, so every figure stays visible in the committed notebook; never a bare
"<Figure size ...>" repr); drops widgets, stderr (progress bars) and per-cell timing metadata,
so committed notebooks stay small and a reader sees the pictures. Execution counts and the
`parameters` tag are kept; the kernelspec is the one `make` installs.
"""
from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor
from PIL import Image

MAX_PNG = 60_000  # bytes of base64 per figure
MAX_HTML = 40_000  # characters of a table's HTML (a larger one keeps its text only)
# the kernel `make` installs into .venv: a notebook that names it opens unmodified in JupyterLab
KERNELSPEC = {"display_name": "Python 3 (handlib .venv)", "language": "python", "name": "python3"}


def shrink_png(b64: str, limit: int = MAX_PNG) -> str:
    """The PNG scaled down (and reduced to a 256-colour palette) until its base64 fits ``limit``."""
    if len(b64) <= limit:
        return b64
    img = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
    scale = 1.0
    while True:
        w, h = max(1, int(img.width * scale)), max(1, int(img.height * scale))
        small = img.resize((w, h), Image.LANCZOS).quantize(256)
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
        out = base64.b64encode(buf.getvalue()).decode()
        if len(out) <= limit or w <= 64:
            return out
        scale *= 0.85


def slim(nb) -> None:
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        keep = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                keep.append(out)
            elif out.output_type in ("execute_result", "display_data") and "image/png" in out.data:
                out.data = {"image/png": shrink_png(out.data["image/png"]), "text/plain": out.data.get("text/plain", "")}
                out.metadata = {}
                keep.append(out)
            elif out.output_type in ("execute_result", "display_data") and "text/plain" in out.data:
                if "application/vnd.jupyter.widget-view+json" in out.data:
                    continue
                if out.data["text/plain"].startswith("<Figure size"):
                    continue  # a figure whose picture was not kept: no trace
                # tables keep their HTML (what JupyterLab shows), Markdown keeps its text
                out.data = {k: v for k, v in out.data.items()
                            if k == "text/plain" or (k in ("text/html", "text/markdown") and len(v) <= MAX_HTML)}
                out.metadata = {}
                keep.append(out)
            elif out.output_type == "error":
                raise RuntimeError(f"cell failed: {''.join(cell.source)[:200]}")
        cell.outputs = keep


def main(paths: list[str]) -> None:
    for p in map(Path, paths):
        nb = nbformat.read(p, as_version=4)
        ExecutePreprocessor(timeout=1800, kernel_name="python3",
                           kernel_manager_class="handlib.kernel.QuietKernelManager").preprocess(nb, {"metadata": {"path": str(p.parent)}})
        slim(nb)
        nbformat.write(nb, p)
        print(f"{p}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
