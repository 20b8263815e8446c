"""NIR interchange (Neuromorphic Intermediate Representation, doi:10.1038/s41467-024-52259-9).

:func:`to_nir` exports a spike model exactly or raises naming the layer; :func:`from_nir` reads a
chain graph back; the one continuous <-> discrete mapping is documented in :mod:`spike.nir.mapping`.

Example:
    >>> import nir
    >>> graph = to_nir(model.eval(), dt=1.0)
    >>> nir.write("model.nir", graph)
    >>> model2 = from_nir(nir.read("model.nir"), dt=1.0)
"""

from spike.nir.export import NIRExportError, to_nir
from spike.nir.import_ import NIRImportError, from_nir

__all__ = ["to_nir", "from_nir", "NIRExportError", "NIRImportError"]
