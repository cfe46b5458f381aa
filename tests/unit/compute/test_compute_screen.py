"""PNG/PPM screen dumps re-encoded as the JPEG EC2's GetConsoleScreenshot serves."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from goldsmith.compute.errors import HypervisorError
from goldsmith.compute.screen import to_jpeg


def encoded(mode: str, size: tuple[int, int], fmt: str) -> bytes:
    picture = Image.new(mode, size, "white")
    for x in range(size[0] // 2):  # left half dark: the content must survive
        for y in range(size[1]):
            picture.putpixel((x, y), 0)
    out = io.BytesIO()
    picture.save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt"), [("RGB", "PNG"), ("RGBA", "PNG"), ("RGB", "PPM"), ("L", "PNG")]
)
def test_screen_dumps_become_rgb_jpegs(mode: str, fmt: str) -> None:
    jpeg = to_jpeg(encoded(mode, (64, 32), fmt))
    assert jpeg[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(jpeg)) as picture:
        assert (picture.format, picture.mode, picture.size) == ("JPEG", "RGB", (64, 32))
        left, right = picture.getpixel((8, 16)), picture.getpixel((56, 16))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert max(left) < 40 and min(right) > 215


def test_not_an_image_is_a_hypervisor_error() -> None:
    with pytest.raises(HypervisorError, match="unreadable screenshot"):
        to_jpeg(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(HypervisorError):
        to_jpeg(b"")


def test_absurd_sizes_are_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("goldsmith.compute.screen.MAX_PIXELS", 100)
    with pytest.raises(HypervisorError, match="too large"):
        to_jpeg(encoded("RGB", (20, 20), "PNG"))
