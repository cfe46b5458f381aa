"""Unit tests of the resource pages' form readers and display helpers (no server)."""

from __future__ import annotations

import base64
from typing import Any, cast

import pytest

from goldsmith.api.console.framework import Console
from goldsmith.api.console.pages.launch import run_params
from goldsmith.api.console.pages.resources import (
    account_ids,
    login_user,
    ssh_command,
    state_name,
    tag_rows,
    volume_rows,
)
from goldsmith.service.context import RequestContext
from goldsmith.service.errors import Ec2Error


def console(**form: str | list[str]) -> Console:
    """A Console with only a form: enough for the functions that read forms."""
    fields = {k: v if isinstance(v, list) else [v] for k, v in form.items()}
    ctx = RequestContext("111122223333", "us-east-1", "req", "AKIA")
    return Console(cast(Any, None), cast(Any, None), ctx, {}, {}, fields)


def test_login_user_is_admin_only_for_debian_images() -> None:
    assert login_user({"Name": "goldsmith-debian-12-2026.11.23-abc"}) == "admin"
    assert login_user({"Name": "web", "Description": "Debian 12 (bookworm) server"}) == "admin"
    assert login_user({"Name": "goldsmith-tiny-2026.11.23-abc"}) == "ec2-user"
    assert login_user(None) == "ec2-user"


def test_ssh_command_only_for_a_running_instance_with_an_address() -> None:
    running = {"State": {"Name": "running"}, "PublicIpAddress": "127.100.0.7", "KeyName": "k"}
    assert ssh_command(running, "ec2-user") == "ssh -i k.pem ec2-user@127.100.0.7"
    assert ssh_command({**running, "KeyName": None}, "admin") == "ssh admin@127.100.0.7"
    assert ssh_command({**running, "State": {"Name": "stopped"}}, "ec2-user") == ""
    assert ssh_command({"State": {"Name": "running"}}, "ec2-user") == ""


def test_state_name_reads_instance_and_plain_states() -> None:
    assert state_name({"Name": "pending", "Code": 0}) == "pending"
    assert state_name("available") == "available"
    assert state_name(None) == ""


def test_tag_rows_skip_rows_without_a_key_and_trim() -> None:
    c = console(tag_key=[" team ", "", "env"], tag_value=["web ", "ignored", ""])
    assert tag_rows(c) == [{"Key": "team", "Value": "web"}, {"Key": "env", "Value": ""}]
    assert tag_rows(console()) == []


def test_volume_rows_become_block_device_mappings() -> None:
    c = console(
        vol_device=["/dev/sdf", "", "/dev/sdh"],
        vol_size=["8", "", ""],
        vol_snapshot=["", "", "snap-0123456789abcdef0"],
    )
    assert volume_rows(c) == [
        {
            "DeviceName": "/dev/sdf",
            "Ebs": {"DeleteOnTermination": True, "VolumeType": "gp3", "VolumeSize": 8},
        },
        {
            "DeviceName": "/dev/sdh",
            "Ebs": {
                "DeleteOnTermination": True,
                "VolumeType": "gp3",
                "SnapshotId": "snap-0123456789abcdef0",
            },
        },
    ]
    with pytest.raises(Ec2Error) as bad:
        volume_rows(console(vol_device=["/dev/sdf"], vol_size=["lots"]))
    assert bad.value.code == "InvalidParameterValue"


def test_account_ids_are_twelve_digits_separated_by_spaces_or_commas() -> None:
    assert account_ids("111122223333, 444455556666\n777788889999") == [
        "111122223333",
        "444455556666",
        "777788889999",
    ]
    for text in ("", "12345", "111122223333 alice"):
        with pytest.raises(Ec2Error) as bad:
            account_ids(text)
        assert bad.value.code == "InvalidParameterValue"


def test_run_params_from_the_wizard_form() -> None:
    c = console(
        image_id="ami-0123456789abcdef0",
        instance_type="t3.micro",
        count="3",
        user_data="#!/bin/sh\r\necho hi\r\n",
        name="web",
        tag_key=["Name", "team"],
        tag_value=["overridden", "web"],
    )
    params = run_params(c, "laptop")
    assert params["ImageId"] == "ami-0123456789abcdef0"
    assert (params["MinCount"], params["MaxCount"]) == (3, 3)
    assert params["KeyName"] == "laptop"
    assert base64.b64decode(params["UserData"]) == b"#!/bin/sh\necho hi\n"
    tags = [{"Key": "Name", "Value": "web"}, {"Key": "team", "Value": "web"}]
    assert params["TagSpecifications"] == [
        {"ResourceType": "instance", "Tags": tags},
        {"ResourceType": "volume", "Tags": tags},
    ]
    assert "BlockDeviceMappings" not in params
    bare = run_params(console(image_id="ami-0123456789abcdef0"), None)
    assert bare == {
        "ImageId": "ami-0123456789abcdef0",
        "InstanceType": "t2.micro",
        "MinCount": 1,
        "MaxCount": 1,
    }
    for form in ({"count": "0"}, {"count": "21"}, {"count": "two"}):
        with pytest.raises(Ec2Error) as bad:
            run_params(console(image_id="ami-0123456789abcdef0", **form), None)
        assert bad.value.code == "InvalidParameterValue"
    with pytest.raises(Ec2Error) as missing:
        run_params(console(), None)
    assert missing.value.code == "MissingParameter"
