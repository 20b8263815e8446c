"""Event-driven CPU kernels on numpy arrays (numpy + numba only; never imports torch).

Representations and filters for tonic-style structured event arrays (``x, y, t, p``, ``t`` in
microseconds, ``sensor_size = (W, H, P)``):

* :func:`to_frame` -- counts per window ``[T, P, H, W]`` (by ``n_time_bins``, ``time_window`` or
  ``event_count``); tonic-exact where tonic is right, see :mod:`spike.events.frames`.
* :func:`to_voxel_grid` -- Zhu et al. 2019 event volume ``[B, H, W]``.
* :func:`to_time_surface` -- exponentially decayed last-event time ``[T, P, H, W]``.
* :func:`denoise` / :func:`denoise_mask` -- background-activity filter.
* :class:`ToFrame`, :class:`ToVoxelGrid`, :class:`ToTimeSurface`, :class:`Denoise` -- frozen
  dataclass wrappers for ``tonic.transforms.Compose``.
"""

from spike.events.denoise import denoise, denoise_mask
from spike.events.frames import frame_nbytes, slice_indices, to_frame
from spike.events.surfaces import to_time_surface, to_voxel_grid
from spike.events.transforms import Denoise, ToFrame, ToTimeSurface, ToVoxelGrid

__all__ = [
    "Denoise",
    "ToFrame",
    "ToTimeSurface",
    "ToVoxelGrid",
    "denoise",
    "denoise_mask",
    "frame_nbytes",
    "slice_indices",
    "to_frame",
    "to_time_surface",
    "to_voxel_grid",
]
