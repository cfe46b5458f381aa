"""Who is asking, where: the context every service call receives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    """An authenticated caller in one region.

    ``account_id`` is the account every permission check uses; ``region`` is the catalog
    partition (from the SigV4 credential scope); ``request_id`` ties logs to responses.
    """

    account_id: str
    region: str
    request_id: str = ""
    access_key_id: str = ""
