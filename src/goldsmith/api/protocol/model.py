"""botocore's EC2 service model, loaded once, and the naming rules both directions share.

Everything the codec knows about EC2 comes from ``botocore.session.get_session()
.get_service_model("ec2")``: operations, shapes, member names, wire names, enums. Loading the
model takes about a second on a cold start, so :func:`ec2_service_model` caches it for the
process; the model is read-only after loading, so sharing it between threads is safe.

Naming rules (the ones botocore's ``EC2Serializer`` and ``EC2QueryParser`` implement):

- a request parameter is named by the member's ``queryName``, else its ``locationName``
  with the first letter upper-cased, else the member name;
- a response element is named by the member's ``locationName``, else the member name, and a
  list's items by the list member's ``locationName`` (``item`` in practice).
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
from botocore.model import ServiceModel, Shape

#: The default element name for list items (EC2 names every list item ``item``).
DEFAULT_ITEM_NAME = "item"


@functools.cache
def ec2_service_model() -> ServiceModel:
    """The EC2 service model bundled with the installed botocore (loaded once per process)."""
    return botocore.session.get_session().get_service_model("ec2")


def query_name(member_shape: Shape, member_name: str) -> str:
    """The request parameter name of a structure member (``EC2Serializer`` rules)."""
    serialization: dict[str, Any] = member_shape.serialization
    if "queryName" in serialization:
        return str(serialization["queryName"])
    if "name" in serialization:
        name = str(serialization["name"])
        return name[:1].upper() + name[1:]
    return member_name


def xml_name(member_shape: Shape, member_name: str) -> str:
    """The response element name of a structure member (``EC2QueryParser`` rules)."""
    return str(member_shape.serialization.get("name", member_name))


def item_name(list_shape: Shape) -> str:
    """The element name of a list's items in a response."""
    return str(list_shape.member.serialization.get("name", DEFAULT_ITEM_NAME))


def unsupported(shape: Shape) -> str | None:
    """Why the codec cannot handle ``shape``, or None when it can.

    The EC2 model has no maps, flattened lists or XML attributes; rather than guess at their
    wire form we refuse them when a shape is first compiled.
    """
    if shape.type_name == "map":
        return f"map shape {shape.name} (EC2 has none)"
    if shape.serialization.get("flattened"):
        return f"flattened shape {shape.name} (EC2 has none)"
    if shape.serialization.get("xmlAttribute"):
        return f"XML attribute shape {shape.name} (EC2 has none)"
    return None
