"""REST-JSON protocol support (EBS direct API, recycle bin), derived from botocore's models."""

from goldsmith.api.restjson.codec import Response, RestJsonCodec, RestJsonError, service_model

__all__ = ["Response", "RestJsonCodec", "RestJsonError", "service_model"]
