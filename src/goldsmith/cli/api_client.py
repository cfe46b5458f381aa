"""The CLI as a client of the public API: connection options and one boto3 wrapper.

Commands that talk to a running server (images, snapshots, instances) take the same options
— ``--endpoint`` (default http://127.0.0.1:4566), ``--region``, ``--profile``, ``--data-dir``
— and reach the server over HTTP with boto3 exactly like any other client. Credentials come
from the AWS environment variables or ``--profile``, else from the admin credentials that
the first start wrote to ``<data-dir>/admin-credentials``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from goldsmith.cli.common import CREDENTIALS_FILE, fail, settings_from
from goldsmith.cli.serve_cmd import read_credentials

DEFAULT_ENDPOINT = "http://127.0.0.1:4566"

EndpointOption = Annotated[
    str,
    typer.Option(
        "--endpoint", "--endpoint-url", envvar="GOLDSMITH_ENDPOINT", help="The Goldsmith API URL."
    ),
]
RegionOption = Annotated[str, typer.Option("--region", envvar="AWS_DEFAULT_REGION", help="Region.")]
ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="AWS profile with the credentials.")
]


def client(
    endpoint: str, region: str, profile: str | None, data_dir: Path | None, service: str = "ec2"
) -> Any:
    """A boto3 client for the server: env/profile credentials, else the admin's file."""
    session = boto3.session.Session(profile_name=profile, region_name=region)
    kwargs: dict[str, Any] = {}
    if session.get_credentials() is None:
        settings = settings_from(data_dir)
        creds = read_credentials(settings.data_dir / CREDENTIALS_FILE)
        if creds is None:
            raise fail("no credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile")
        kwargs = {"aws_access_key_id": creds[0], "aws_secret_access_key": creds[1]}
    config = Config(retries={"max_attempts": 2, "mode": "standard"})
    return session.client(service, endpoint_url=endpoint, config=config, **kwargs)


class Api:
    """EC2 and EBS clients for one set of options; API errors become CLI failures."""

    def __init__(self, endpoint: str, region: str, profile: str | None, data_dir: Path | None):
        self._options = (endpoint, region, profile, data_dir)

    # Made on first use: loading a service model takes a noticeable part of a second.
    @functools.cached_property
    def ec2(self) -> Any:
        return client(*self._options)

    @functools.cached_property
    def ebs(self) -> Any:
        return client(*self._options, service="ebs")

    def call(self, action: str, **params: Any) -> Any:
        """An EC2 call."""
        return self._call(self.ec2, action, params)

    def ebs_call(self, action: str, **params: Any) -> Any:
        """An EBS direct API call."""
        return self._call(self.ebs, action, params)

    @staticmethod
    def _call(target: Any, action: str, params: dict[str, Any]) -> Any:
        try:
            return getattr(target, action)(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise fail(f"{error.get('Code')}: {error.get('Message')}") from exc
        except BotoCoreError as exc:
            raise fail(str(exc)) from exc
