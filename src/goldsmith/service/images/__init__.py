"""Images: registration, search, attributes and sharing, lifecycle (see docs/images.md)."""

from goldsmith.service.images.service import ImageService

__all__ = ["ImageService"]
