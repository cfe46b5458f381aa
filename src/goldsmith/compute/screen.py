"""Screenshots as EC2 serves them: a VM's screen (PNG from QEMU's ``screendump``) as JPEG.

EC2's GetConsoleScreenshot returns a base64 JPEG. QEMU 7.2 dumps PNG or PPM only, so the
driver's PNG is re-encoded here with Pillow. Decoding is bounded: an image larger than
:data:`MAX_PIXELS` (far beyond any VGA mode) is refused rather than decoded.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from goldsmith.compute.errors import HypervisorError

MAX_PIXELS = 8192 * 8192
JPEG_QUALITY = 85


def to_jpeg(image: bytes, quality: int = JPEG_QUALITY) -> bytes:
    """``image`` (PNG, PPM or anything Pillow reads) re-encoded as a baseline RGB JPEG.

    Raises ``HypervisorError`` when the bytes are not an image (a driver bug, or a dump
    that was cut short).
    """
    try:
        with Image.open(io.BytesIO(image)) as src:
            width, height = src.size
            if width * height > MAX_PIXELS:
                raise HypervisorError(f"screenshot of {width}x{height} pixels is too large")
            rgb = src.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise HypervisorError(f"unreadable screenshot: {exc}") from exc
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality)
    return out.getvalue()
