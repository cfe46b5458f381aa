"""The instances pages and the launch wizard over HTTP (JSON twins and HTML answers).

The module runs its own server with the fake hypervisor (``GOLDSMITH_HYPERVISOR=fake``):
instances go through every state as with QEMU, without VMs, so these tests take seconds.
The real-VM flow is tests/console/test_acceptance.py.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import ConsoleClient, Images, flash_text, new_account

from harness import Creds, Server

pytestmark = pytest.mark.integration

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me"


def terminate_all(server: Server, creds: Creds) -> None:
    """Terminate the account's instances (the host's vCPU capacity is shared by all tests)."""
    ec2 = server.client(creds)
    ids = [
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)


@pytest.fixture
def owner(fake_server: Server) -> Iterator[Creds]:
    creds = new_account(fake_server)
    yield creds
    terminate_all(fake_server, creds)


@pytest.fixture
def image_id(fake_server: Server, owner: Creds) -> str:
    return Images(fake_server, owner).register("console-launchable", VirtualizationType="hvm")


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_state(
    me: ConsoleClient, instance_id: str, state: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        instance = ok(me.get_json(f"/console/instances/{instance_id}"))["Instance"]
        if instance["State"]["Name"] == state:
            return dict(instance)
        if instance["State"]["Name"] == "terminated":
            raise AssertionError(f"{instance_id} terminated: {instance.get('StateReason')}")
        assert time.monotonic() < deadline, f"{instance_id} stuck in {instance['State']}"
        time.sleep(0.2)


def launch(me: ConsoleClient, image_id: str, **form: Any) -> dict[str, Any]:
    return ok(me.post("/console/instances/launch", {"image_id": image_id, **form}))


def test_wizard_offers_the_image_instance_types_and_key_pairs(
    fake_server: Server, owner: Creds, image_id: str, make_console: Any
) -> None:
    fake_server.client(owner).create_key_pair(KeyName="laptop")
    me = make_console(owner)
    wizard = ok(me.get_json("/console/instances/launch", image=image_id))
    assert wizard["Image"]["ImageId"] == image_id
    types = {t["InstanceType"]: t for t in wizard["InstanceTypes"]}
    assert types["t2.micro"]["VCpuInfo"]["DefaultVCpus"] == 1
    assert types["t2.micro"]["MemoryInfo"]["SizeInMiB"] == 1024
    assert wizard["KeyPairs"] == ["laptop"]
    # Without an image, the wizard offers what the caller may launch (search by name).
    picker = ok(me.get_json("/console/instances/launch", q="launchable"))
    assert [(i["ImageId"], i["Scope"]) for i in picker["Images"]] == [(image_id, "owned")]
    assert ok(me.get_json("/console/instances/launch", q="nothing-like-it"))["Images"] == []
    html = me.http.get("/console/instances/launch", params={"image": image_id}).text
    assert f'name="image_id" value="{image_id}"' in html
    assert 'id="type-t2.micro" checked' in html


def test_wizard_creates_a_key_pair_and_launches_with_everything(
    fake_server: Server, owner: Creds, image_id: str, make_console: Any
) -> None:
    me = make_console(owner)
    answer = launch(
        me,
        image_id,
        name="web-1",
        tag_key=["team", ""],
        tag_value=["web", ""],
        instance_type="t2.small",
        key_mode="create",
        new_key_name="wizard-key",
        new_key_type="ed25519",
        user_data="#!/bin/sh\r\necho hello\r\n",
        root_size="2",
        vol_device=["/dev/sdf", ""],
        vol_size=["3", ""],
        vol_snapshot=["", ""],
        count="2",
    )
    # The private key, once, with the launched instances.
    assert answer["KeyName"] == "wizard-key"
    assert answer["KeyMaterial"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert len(answer["InstanceIds"]) == 2
    ec2 = fake_server.client(owner)
    found = ec2.describe_instances(InstanceIds=answer["InstanceIds"])["Reservations"][0]
    for instance in found["Instances"]:
        assert instance["ImageId"] == image_id
        assert instance["InstanceType"] == "t2.small"
        assert instance["KeyName"] == "wizard-key"
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags == {"Name": "web-1", "team": "web"}
    first = answer["InstanceIds"][0]
    page = me.post_html(
        "/console/instances/launch",
        {"image_id": image_id, "key_mode": "create", "new_key_name": "html-key"},
    )
    assert page.status_code == 200
    assert "Download html-key.pem" in page.text
    assert "-----BEGIN OPENSSH PRIVATE KEY-----" in page.text
    wait_state(me, first, "running")
    user_data = ec2.describe_instance_attribute(InstanceId=first, Attribute="userData")
    assert base64.b64decode(user_data["UserData"]["Value"]) == b"#!/bin/sh\necho hello\n"
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [first]}])
    sizes = {v["Attachments"][0]["Device"]: v["Size"] for v in volumes["Volumes"]}
    assert sizes == {"/dev/xvda": 2, "/dev/sdf": 3}
    assert ec2.describe_key_pairs(KeyNames=["wizard-key"])["KeyPairs"]


def test_wizard_imports_a_key_or_uses_an_existing_one(
    fake_server: Server, owner: Creds, image_id: str, make_console: Any
) -> None:
    me = make_console(owner)
    imported = launch(
        me, image_id, key_mode="import", import_key_name="mine", public_key=PUBLIC_KEY
    )
    assert "KeyMaterial" not in imported
    (iid,) = imported["InstanceIds"]
    again = launch(me, image_id, key_mode="existing", key_name="mine")
    ec2 = fake_server.client(owner)
    ids = [iid, *again["InstanceIds"]]
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    assert {i["KeyName"] for r in reservations for i in r["Instances"]} == {"mine"}


def test_wizard_errors_are_the_apis_and_a_created_key_is_still_shown(
    owner: Creds, image_id: str, make_console: Any
) -> None:
    me = make_console(owner)
    bad_type = me.post(
        "/console/instances/launch",
        {"image_id": image_id, "instance_type": "x9.galactic", "key_mode": "none"},
    )
    assert bad_type.status_code == 400
    assert bad_type.json()["Error"]["Code"] == "InvalidParameterValue"
    count = me.post("/console/instances/launch", {"image_id": image_id, "count": "0"})
    assert count.json()["Error"]["Code"] == "InvalidParameterValue"
    missing = me.post("/console/instances/launch", {"image_id": "ami-0123456789abcdef0"})
    assert missing.json()["Error"]["Code"] == "InvalidAMIID.NotFound"
    # A key made before a launch that then fails is shown anyway (it is never shown again).
    answer = launch(
        me,
        image_id,
        key_mode="create",
        new_key_name="kept",
        instance_type="x9.galactic",
    )
    assert answer["InstanceIds"] == []
    assert answer["LaunchError"]["Code"] == "InvalidParameterValue"
    assert answer["KeyMaterial"]
    # The same in HTML: the key to download, and the error.
    html = me.post_html(
        "/console/instances/launch",
        {
            "image_id": image_id,
            "key_mode": "create",
            "new_key_name": "kept-too",
            "instance_type": "x9.galactic",
        },
    )
    assert html.status_code == 200
    assert "Download kept-too.pem" in html.text
    assert "InvalidParameterValue" in html.text
    # Through the browser's form, an error returns to the wizard with its message.
    page = me.post_html(
        "/console/instances/launch",
        {"image_id": image_id, "instance_type": "x9.galactic", "next": "/console/instances/launch"},
    )
    assert page.status_code == 303
    assert page.headers["location"] == "/console/instances/launch"
    shown = me.http.get("/console/instances/launch")
    assert "InvalidParameterValue" in flash_text(shown)


def test_table_states_ssh_command_and_actions(
    fake_server: Server, owner: Creds, image_id: str, make_console: Any
) -> None:
    me = make_console(owner)
    fake_server.client(owner).create_key_pair(KeyName="ops")
    (iid,) = launch(me, image_id, key_mode="existing", key_name="ops", name="box")["InstanceIds"]
    running = wait_state(me, iid, "running")
    table = ok(me.get_json("/console/instances"))["Instances"]
    (row,) = [i for i in table if i["InstanceId"] == iid]
    assert row["Name"] == "box"
    assert row["ImageName"] == "console-launchable"
    address = running["PublicIpAddress"]
    assert row["SshCommand"] == f"ssh -i ops.pem ec2-user@{address}"
    html = me.http.get("/console/instances").text
    shown = re.sub(r"<[^>]+>", "", html.split('class="ssh"', 1)[1].split("</code>", 1)[0])
    assert shown == f">ssh -i ops.pem ec2-user@{address}"
    assert ok(me.get_json("/console/instances", state="stopped"))["Instances"] == []
    for op, state in (("stop", "stopped"), ("start", "running"), ("reboot", "running")):
        done = ok(me.post("/console/instances/state", {"op": op, "instance_id": iid}))
        assert done["Op"] == op
        wait_state(me, iid, state)
    stopped_only = ok(me.get_json("/console/instances", state="running"))["Instances"]
    assert [i["InstanceId"] for i in stopped_only] == [iid]
    ok(me.post("/console/instances/state", {"op": "terminate", "instance_id": iid}))
    gone = wait_state(me, iid, "terminated")
    assert gone["State"]["Name"] == "terminated"
    assert ok(me.get_json("/console/instances"))["Instances"][0]["SshCommand"] == ""
    bad = me.post("/console/instances/state", {"op": "explode", "instance_id": iid})
    assert bad.json()["Error"]["Code"] == "InvalidParameterValue"


def test_transitional_states_make_the_page_live(
    owner: Creds, image_id: str, make_console: Any
) -> None:
    me = make_console(owner)
    (iid,) = launch(me, image_id)["InstanceIds"]
    html = me.http.get("/console/instances").text
    state = ok(me.get_json(f"/console/instances/{iid}"))["Instance"]["State"]["Name"]
    if state == "pending":  # the fake may already be running: then the page is not live
        assert 'data-live="/console/instances"' in html
    wait_state(me, iid, "running")
    assert "data-live=" not in me.http.get("/console/instances").text
    assert f'data-live-id="{iid}" data-live-field="State"' in me.http.get("/console/instances").text


def test_detail_tabs_and_console_output(
    fake_server: Server, owner: Creds, image_id: str, make_console: Any
) -> None:
    me = make_console(owner)
    (iid,) = launch(me, image_id, name="viewer")["InstanceIds"]
    wait_state(me, iid, "running")
    log = fake_server.data_dir / "regions" / "us-east-1" / "instances" / iid / "console.log"
    with log.open("ab") as f:
        f.write(b"booted <fine> & ready\n")
    shown = ok(me.get_json(f"/console/instances/{iid}", tab="console"))
    assert "booted <fine> & ready" in shown["Output"]
    html = me.http.get(f"/console/instances/{iid}", params={"tab": "console"}).text
    assert "booted &lt;fine&gt; &amp; ready" in html
    assert 'id="refresh-console"' in html
    storage_html = me.http.get(f"/console/instances/{iid}", params={"tab": "storage"})
    assert storage_html.status_code == 200
    assert "/dev/xvda" in storage_html.text
    storage = ok(me.get_json(f"/console/instances/{iid}", tab="storage"))
    assert [v["Attachments"][0]["Device"] for v in storage["Volumes"]] == ["/dev/xvda"]
    details = me.http.get(f"/console/instances/{iid}").text
    assert "Create image" in details and "ssh -i" not in details  # no key pair: no -i
    bad = me.get_json(f"/console/instances/{iid}", tab="secrets")
    assert bad.json()["Error"]["Code"] == "InvalidParameterValue"


def test_create_image_with_no_reboot_and_an_extra_volume(
    fake_server: Server, owner: Creds, image_id: str, make_console: Any
) -> None:
    me = make_console(owner)
    (iid,) = launch(me, image_id)["InstanceIds"]
    wait_state(me, iid, "running")
    done = ok(
        me.post(
            f"/console/instances/{iid}/create-image",
            {
                "name": "captured",
                "description": "from the console",
                "no_reboot": "1",
                "vol_device": ["/dev/sdg", ""],
                "vol_size": ["4", ""],
                "vol_snapshot": ["", ""],
            },
        )
    )
    new_id = done["ImageId"]
    ec2 = fake_server.client(owner)
    deadline = time.monotonic() + 60
    while (image := ec2.describe_images(ImageIds=[new_id])["Images"][0])["State"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert image["State"] == "available", image.get("StateReason")
    assert image["Description"] == "from the console"
    assert image["SourceInstanceId"] == iid
    sizes = {m["DeviceName"]: m["Ebs"]["VolumeSize"] for m in image["BlockDeviceMappings"]}
    assert sizes["/dev/sdg"] == 4
    # NoReboot: the instance never left running.
    assert wait_state(me, iid, "running", timeout=1)
    missing = me.post(f"/console/instances/{iid}/create-image", {"name": ""})
    assert missing.json()["Error"]["Code"] == "MissingParameter"


def test_another_accounts_instances_are_neither_shown_nor_actionable(
    fake_server: Server, owner: Creds, image_id: str, make_console: Any
) -> None:
    me = make_console(owner)
    (iid,) = launch(me, image_id, name="private-box")["InstanceIds"]
    wait_state(me, iid, "running")
    them = make_console(new_account(fake_server))
    assert ok(them.get_json("/console/instances"))["Instances"] == []
    assert iid not in them.http.get("/console/instances").text
    for tab in ("details", "storage", "console"):
        seen = them.get_json(f"/console/instances/{iid}", tab=tab)
        assert seen.status_code == 400
        assert seen.json()["Error"]["Code"] == "InvalidInstanceID.NotFound"
    for op in ("stop", "reboot", "terminate"):
        refused = them.post("/console/instances/state", {"op": op, "instance_id": iid})
        assert refused.json()["Error"]["Code"] == "InvalidInstanceID.NotFound"
    crafted = them.post(f"/console/instances/{iid}/create-image", {"name": "stolen"})
    assert crafted.json()["Error"]["Code"] == "InvalidInstanceID.NotFound"
    # The stranger cannot launch the owner's private image either.
    refused = them.post("/console/instances/launch", {"image_id": image_id})
    assert refused.json()["Error"]["Code"] == "InvalidAMIID.NotFound"
    # Untouched: still running, and no image was made from it.
    assert wait_state(me, iid, "running", timeout=1)
    assert fake_server.client(owner).describe_images(Owners=["self"])["Images"][0]["ImageId"] == (
        image_id
    )


ACTIONS = [
    ("/console/instances/launch", {"image_id": "IMAGE", "key_mode": "none"}),
    ("/console/instances/state", {"op": "terminate", "instance_id": "INSTANCE"}),
    ("/console/instances/INSTANCE/create-image", {"name": "csrf-image"}),
]


@pytest.mark.parametrize(("path", "form"), ACTIONS)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_instance_action_checks_the_csrf_token(
    fake_server: Server,
    owner: Creds,
    image_id: str,
    make_console: Any,
    path: str,
    form: dict[str, str],
    token: str | None,
) -> None:
    me = make_console(owner)
    (iid,) = launch(me, image_id)["InstanceIds"]
    filled = {k: v.replace("IMAGE", image_id).replace("INSTANCE", iid) for k, v in form.items()}
    if token is not None:
        filled["csrf_token"] = token
    response = me.post(path.replace("INSTANCE", iid), filled, csrf=False)
    assert response.status_code == 403
    assert response.json()["Error"]["Code"] == "InvalidCsrfToken"
    # Nothing happened: one instance, not terminated, no image made.
    ec2 = fake_server.client(owner)
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert [i["InstanceId"] for i in instances] == [iid]
    assert instances[0]["State"]["Name"] in ("pending", "running")
    assert [i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]] == [image_id]
