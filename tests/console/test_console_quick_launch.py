"""The image page's quick launch (one RunInstances), on a server with the fake hypervisor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from console_helpers import ConsoleClient, Images, new_account

from harness import Server, start_server, stop_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("gs-console-quick") / "data"
    srv = start_server(data_dir, env={"GOLDSMITH_HYPERVISOR": "fake"})
    try:
        yield srv
    finally:
        stop_server(srv.proc)


def test_launch_from_the_image_page(fake_server: Server) -> None:
    owner = new_account(fake_server)
    images = Images(fake_server, owner)
    image_id = images.register("quick", Architecture="x86_64")
    me = ConsoleClient(fake_server).sign_in_as(owner)
    try:
        me.post("/console/keypairs/create", {"name": "quick-key"})
        html = me.http.get(f"/console/images/{image_id}").text
        types = [t["InstanceType"] for t in images.ec2.describe_instance_types()["InstanceTypes"]]
        assert all(f"<option>{t}</option>" in html for t in types)
        assert "<option>quick-key</option>" in html
        done = me.post(
            f"/console/images/{image_id}/launch",
            {"instance_type": "t2.micro", "key_name": "quick-key"},
        )
        assert done.status_code == 200, done.text
        (instance_id,) = done.json()["Ids"]
        (reservation,) = images.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        (instance,) = reservation["Instances"]
        assert (instance["ImageId"], instance["KeyName"]) == (image_id, "quick-key")
        assert instance["InstanceType"] == "t2.micro"
        bad = me.post(f"/console/images/{image_id}/launch", {"instance_type": "x9.huge"})
        assert bad.status_code == 400
        images.ec2.terminate_instances(InstanceIds=[instance_id])
    finally:
        me.close()
