"""The API front door, driven over HTTP like a user: regions, zones, authentication."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from harness import Creds, Server

pytestmark = pytest.mark.integration


def error_of(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def test_describe_regions_lists_every_standard_region(ec2: Any) -> None:
    names = {r["RegionName"] for r in ec2.describe_regions()["Regions"]}
    assert {"us-east-1", "eu-west-1", "ap-southeast-2"} <= names
    assert len(names) >= 30


def test_describe_regions_filters_and_names(ec2: Any) -> None:
    got = ec2.describe_regions(Filters=[{"Name": "region-name", "Values": ["eu-*"]}])
    names = {r["RegionName"] for r in got["Regions"]}
    assert names and all(n.startswith("eu-") for n in names)
    one = ec2.describe_regions(RegionNames=["us-west-2"])["Regions"]
    assert [r["RegionName"] for r in one] == ["us-west-2"]
    assert error_of(ec2.describe_regions, RegionNames=["mars-north-1"]) == (
        "InvalidParameterValue",
        400,
    )
    assert error_of(ec2.describe_regions, Filters=[{"Name": "bogus", "Values": ["x"]}]) == (
        "InvalidParameterValue",
        400,
    )


def test_availability_zones_follow_the_signed_region(server: Server, account: Creds) -> None:
    zones = server.client(account, region="eu-central-1").describe_availability_zones()
    names = [z["ZoneName"] for z in zones["AvailabilityZones"]]
    assert names == ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
    assert zones["AvailabilityZones"][0]["ZoneId"] == "euc1-az1"
    one = server.client(account, region="eu-central-1").describe_availability_zones(
        Filters=[{"Name": "zone-name", "Values": ["*b"]}]
    )
    assert [z["ZoneName"] for z in one["AvailabilityZones"]] == ["eu-central-1b"]


def test_wrong_secret_is_auth_failure(server: Server, account: Creds) -> None:
    bad = Creds(account.account_id, account.access_key_id, "x" * 40)
    assert error_of(server.client(bad).describe_regions) == ("AuthFailure", 401)


def test_unknown_key_is_auth_failure(server: Server) -> None:
    bad = Creds("123456789012", "AKIAUNKNOWNUNKNOWN00", "x" * 40)
    assert error_of(server.client(bad).describe_regions) == ("AuthFailure", 401)


def test_deactivated_key_stops_working_and_reactivates(server: Server) -> None:
    creds = server.new_account()
    client = server.client(creds)
    client.describe_regions()
    server.cli("accounts", "keys", "deactivate", creds.access_key_id)
    assert error_of(client.describe_regions) == ("AuthFailure", 401)
    server.cli("accounts", "keys", "activate", creds.access_key_id)
    client.describe_regions()


def _signed(server: Server, creds: Creds, body: str, when: dt.datetime) -> urllib.request.Request:
    request = AWSRequest(
        method="POST",
        url=server.endpoint + "/",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    auth = SigV4Auth(Credentials(creds.access_key_id, creds.secret_access_key), "ec2", "us-east-1")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        auth.add_auth(request)
    prepared = request.prepare()
    return urllib.request.Request(
        prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST"
    )


def _status_and_body(request: urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_old_timestamp_is_request_expired(server: Server, account: Creds) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    status, body = _status_and_body(
        _signed(server, account, "Action=DescribeRegions&Version=2016-11-15", old)
    )
    assert status == 400
    assert "<Code>RequestExpired</Code>" in body


def test_unsigned_request_is_refused(server: Server) -> None:
    request = urllib.request.Request(server.endpoint + "/?Action=DescribeRegions", method="GET")
    status, body = _status_and_body(request)
    assert status in (400, 401, 403)
    assert "<Response><Errors><Error><Code>" in body


def test_presigned_url_works(server: Server, account: Creds) -> None:
    client = server.client(account)
    url = client.generate_presigned_url("describe_regions", Params={}, ExpiresIn=60)
    # botocore presigns EC2 operations with the model's HTTP method, POST, and no body.
    status, body = _status_and_body(urllib.request.Request(url, data=b"", method="POST"))
    assert status == 200, body
    assert "<regionInfo>" in body


def test_region_outside_configured_set_is_refused(tmp_path: Any) -> None:
    from harness import start_server, stop_server

    srv = start_server(tmp_path / "data", env={"GOLDSMITH_REGIONS": "us-east-1,eu-west-1"})
    try:
        client = srv.client()
        listed = {r["RegionName"] for r in client.describe_regions()["Regions"]}
        assert listed == {"us-east-1", "eu-west-1"}
        every = client.describe_regions(AllRegions=True)["Regions"]
        status = {r["RegionName"]: r["OptInStatus"] for r in every}
        assert status["us-west-2"] == "not-opted-in"
        assert status["eu-west-1"] == "opt-in-not-required"
        code, _ = error_of(srv.client(region="us-west-2").describe_regions)
        assert code in {"OptInRequired", "AuthFailure", "InvalidRegion"}
    finally:
        stop_server(srv.proc)


def test_dry_run(ec2: Any) -> None:
    assert error_of(ec2.describe_regions, DryRun=True) == ("DryRunOperation", 412)
    assert error_of(ec2.create_key_pair, KeyName="dry", DryRun=True) == ("DryRunOperation", 412)
    assert ec2.describe_key_pairs()["KeyPairs"] == []


def test_first_start_credentials_file_is_private(server: Server) -> None:
    mode = (server.data_dir / "admin-credentials").stat().st_mode & 0o777
    assert mode == 0o600


def test_secrets_never_reach_the_log(server: Server, account: Creds) -> None:
    server.client(account).describe_regions()
    bad = Creds(account.account_id, account.access_key_id, "y" * 40)
    with pytest.raises(ClientError):
        server.client(bad).describe_regions()
    log = server.log_path.read_text()
    assert f"account={account.account_id}" in log  # requests are being logged
    for secret in (account.secret_access_key, "y" * 40):
        assert secret not in log
    # The admin's secret is printed once, at first start, and never logged after that.
    assert log.count(server.admin.secret_access_key) == 1
