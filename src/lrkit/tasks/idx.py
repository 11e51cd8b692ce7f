"""Read the gzip-compressed IDX files of MNIST and Fashion-MNIST.

The format (LeCun et al., "THE MNIST DATABASE of handwritten digits", section "FILE FORMATS FOR
THE MNIST DATABASE"): a big-endian 32-bit magic number ``0x0000TTNN`` (``TT`` the element type,
``0x08`` for unsigned bytes; ``NN`` the number of dimensions: ``0x00000803`` for a stack of
images, ``0x00000801`` for a vector of labels), then each dimension's size as a big-endian
int32, then the elements in row-major order. Only unsigned-byte files are read here.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from lrkit.validation import fail, integer

__all__ = ["read_idx"]

_UBYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The `ndim`-dimensional uint8 array stored in the gzip IDX file `path` (read-only view).

    A ValueError names the file when it is not gzip, its magic number is not ``0x0000080N``
    with N = `ndim`, or its data does not hold exactly the product of its dimensions in bytes.
    """
    integer("read_idx", "ndim", ndim, minimum=1)
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise fail("read_idx", "path", f"a complete gzip file ({err})", str(path)) from err
    header = 4 + 4 * ndim
    magic = (_UBYTE << 8) | ndim
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        raise fail("read_idx", f"the magic number of {path}", f"0x{magic:08x} (uint8, {ndim}-d IDX)",
                   f"0x{data[:4].hex()}" if len(data) >= 4 else f"{len(data)} bytes")
    if len(data) < header:
        raise fail("read_idx", f"the header of {path}", f"{header} bytes ({ndim} dimensions)", len(data))
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    size = math.prod(shape)
    if len(data) - header != size:
        dims = " × ".join(map(str, shape))
        raise fail("read_idx", f"the data of {path}", f"{size} bytes ({dims} uint8)", len(data) - header)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
