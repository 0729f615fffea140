"""Writing figures: ``save_figure`` is the one way handlib saves a matplotlib figure."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def save_figure(fig, name: str, out, dpi: int = 120, formats=("png", "pdf")) -> list[Path]:
    """``<out>/figures/<name>.<format>`` for each of ``formats``, each written atomically (a temp
    file in the same directory, then renamed). A PDF carries no creation date, so the same figure
    gives the same bytes and a regenerated report changes only the figures whose content did."""
    d = Path(out) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = d / f"{name}.{fmt}"
        fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}.", suffix=f".{fmt}")
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=fmt,
                        metadata={"CreationDate": None} if fmt == "pdf" else None)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        paths.append(path)
    return paths
