"""Matplotlib figures without pyplot: drawing never switches the user's backend.

Every figure ``spike`` draws (training curves, rasters, anytime curves, energy bars) is a plain
``matplotlib.figure.Figure`` saved through Agg, so a notebook's inline backend stays as it was, no
display is needed, and no global pyplot state is kept.
"""

from __future__ import annotations

__all__ = ["figures"]


def _new(figsize, layout):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)  # its own canvas: rendering and saving never go through pyplot's backend
    return fig


class _Figures:
    """The pyplot calls the figures here use, made without pyplot."""

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, layout=None, squeeze: bool = True, **kw):
        fig = _new(figsize, layout)
        return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **kw)

    @staticmethod
    def figure(figsize=None, layout=None):
        return _new(figsize, layout)

    @staticmethod
    def get_cmap(name: str):
        import matplotlib

        return matplotlib.colormaps[name]

    @staticmethod
    def close(fig) -> None:  # a Figure not made by pyplot is freed with its last reference
        fig.clear()


def figures() -> _Figures:
    """The pyplot-like factory (``subplots``, ``figure``, ``get_cmap``, ``close``) used by ``spike``'s plots."""
    return _Figures()
