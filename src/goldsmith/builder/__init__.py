"""builder layer: platform base images built from distribution packages.

Three artifacts, each built from Debian packages through the host's APT without mounting
anything, and cached by the package versions it was built from:

- :func:`build_kernel`: Debian's cloud kernel and Goldsmith's small initramfs (aki/ari);
- :func:`build_tiny`: a paravirtual busybox + dropbear root that boots to SSH in seconds;
- :func:`build_debian`: a Debian 12 server disk (GPT, UEFI via GRUB, systemd, OpenSSH).

See docs/design/platform-images.md.
"""

from goldsmith.builder._common import BuildError, Progress
from goldsmith.builder.artifacts import DiskImage, KernelArtifacts
from goldsmith.builder.debian import build_debian
from goldsmith.builder.kernel import build_kernel
from goldsmith.builder.tiny import build_tiny

__all__ = [
    "BuildError",
    "DiskImage",
    "KernelArtifacts",
    "Progress",
    "build_debian",
    "build_kernel",
    "build_tiny",
]
