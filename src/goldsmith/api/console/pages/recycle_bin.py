"""Deregistered images still in the recycle bin, and restoring them."""

from __future__ import annotations

from goldsmith.api.console.framework import Console, Done, Spec, View, action, page
from goldsmith.service.errors import missing_parameter


def list_binned(c: Console) -> View:
    out = c.call("ListImagesInRecycleBin", {})
    data = {"Images": out.get("Images") or [], "Region": c.ctx.region}
    return View("recycle_bin.html", "Recycle bin", data, nav="recycle-bin")


def restore(c: Console) -> Done:
    image_id = c.field("image_id")
    if not image_id:
        raise missing_parameter("image_id")
    c.call("RestoreImageFromRecycleBin", {"ImageId": image_id})
    return Done(f"/console/images/{image_id}", f"{image_id} restored from the recycle bin.")


# Listed before the images pages: "/images/recycle-bin" must not be read as an image id.
PAGES: list[Spec] = [
    page("/images/recycle-bin", list_binned),
    action("/images/recycle-bin/restore", restore),
]
