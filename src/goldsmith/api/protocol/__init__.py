"""The EC2 Query protocol codec, derived from botocore's EC2 service model.

:class:`Ec2QueryCodec` parses form parameters into an operation's input dict
(:class:`ParsedRequest`) and serializes output dicts and errors into EC2's response XML.
"""

from goldsmith.api.protocol.codec import Ec2QueryCodec, ParsedRequest

__all__ = ["Ec2QueryCodec", "ParsedRequest"]
