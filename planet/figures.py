"""Saving matplotlib figures: the one place that writes them (plot, report, predict, bench).

Charts only: frames, captions and videos are planet.media's; this module imports nothing of
planet, so that the commands that only draw curves stay light.
"""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path, dpi: float | None = None) -> Path:
    """Save a figure as it is sized (no tight bounding box), creating the folder, and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi if dpi is not None else fig.dpi)
    plt.close(fig)
    return path
