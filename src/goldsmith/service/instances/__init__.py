"""Instances: RunInstances and friends, the instance manager, CreateImage, IMDS data."""

from goldsmith.service.instances.capture import ImageCapture
from goldsmith.service.instances.manager import ImdsTarget, InstanceManager
from goldsmith.service.instances.metadata import Metadata, MetadataService
from goldsmith.service.instances.service import InstanceService

__all__ = [
    "ImageCapture",
    "ImdsTarget",
    "InstanceManager",
    "InstanceService",
    "Metadata",
    "MetadataService",
]
