"""``goldsmith run/ssh/console/create-image`` and ``goldsmith instances …`` — API clients.

Like ``goldsmith images``, these talk to a running server over the EC2 API with boto3
(``--endpoint``, ``--region``, credentials from the environment, ``--profile`` or the
admin's file). ``run`` shows the boot: pending → running → SSH accepting (the console's
``ssh ready`` line or a TCP connect to port 22), and can save a new key pair's private key.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from goldsmith.cli.api_client import (
    DEFAULT_ENDPOINT,
    Api,
    EndpointOption,
    ProfileOption,
    RegionOption,
)
from goldsmith.cli.common import DataDirOption, JsonOption, fail, print_json

app = typer.Typer(help="List, stop, start and terminate instances.", no_args_is_help=True)
InstanceArg = Annotated[str, typer.Argument(help="Instance id (i-…).")]
KEYS_DIR = Path.home() / ".goldsmith" / "keys"


def _instance(api: Api, instance_id: str) -> dict[str, Any]:
    out = api.call("describe_instances", InstanceIds=[instance_id])
    return dict(out["Reservations"][0]["Instances"][0])


def _name(inst: dict[str, Any]) -> str:
    return next((t["Value"] for t in inst.get("Tags") or [] if t["Key"] == "Name"), "")


def _port_open(host: str, port: int = 22) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, port)) != 0:
            return False
        try:
            return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False


def _wait_ssh(api: Api, instance_id: str, timeout: float, console: Console) -> dict[str, Any]:
    started = time.monotonic()
    with console.status(f"{instance_id}: pending") as status:
        while True:
            inst = _instance(api, instance_id)
            state = inst["State"]["Name"]
            elapsed = time.monotonic() - started
            if state in ("terminated", "stopped", "shutting-down"):
                reason = (inst.get("StateReason") or {}).get("Message", "")
                raise fail(f"{instance_id} is {state}: {reason}")
            address = inst.get("PublicIpAddress")
            if state == "running" and address and _port_open(address):
                console.print(f"{instance_id}: SSH accepting after {elapsed:.1f}s")
                return inst
            status.update(f"{instance_id}: {state} ({elapsed:.0f}s)")
            if elapsed > timeout:
                raise fail(f"{instance_id} did not accept SSH within {timeout:.0f}s")
            time.sleep(0.3)


def run(
    image: Annotated[str, typer.Argument(help="Image id (ami-…) to launch.")],
    instance_type: Annotated[str, typer.Option("--type", help="Instance type.")] = "t2.micro",
    key_name: Annotated[
        str | None,
        typer.Option(
            "--key", help="Key pair name (created, saved under ~/.goldsmith/keys, if new)."
        ),
    ] = None,
    user_data: Annotated[
        Path | None, typer.Option("--user-data", help="File with the user data.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name tag.")] = None,
    count: Annotated[int, typer.Option("--count", help="How many instances.")] = 1,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for SSH.")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 180,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Launch IMAGE and wait until its SSH server accepts connections."""
    api = Api(endpoint, region, profile, data_dir)
    console = Console(stderr=True)
    params: dict[str, Any] = {
        "ImageId": image,
        "InstanceType": instance_type,
        "MinCount": count,
        "MaxCount": count,
    }
    if key_name:
        params["KeyName"] = key_name
        if not api.call("describe_key_pairs", Filters=[{"Name": "key-name", "Values": [key_name]}])[
            "KeyPairs"
        ]:
            material = api.call("create_key_pair", KeyName=key_name)["KeyMaterial"]
            KEYS_DIR.mkdir(parents=True, exist_ok=True)
            path = KEYS_DIR / f"{key_name}.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(material)
            console.print(f"created key pair {key_name}; private key saved to {path}")
    if user_data is not None:
        params["UserData"] = user_data.read_text()
    if name:
        params["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}
        ]
    reply = api.call("run_instances", **params)
    ids = [i["InstanceId"] for i in reply["Instances"]]
    found = [_wait_ssh(api, i, timeout, console) if wait else _instance(api, i) for i in ids]
    if as_json:
        print_json(found)
        return
    for inst in found:
        address = inst.get("PublicIpAddress")
        typer.echo(f"{inst['InstanceId']}  {inst['State']['Name']}  {address or '-'}")
        if key_name and address:
            typer.echo(f"  ssh -i {KEYS_DIR / (key_name + '.pem')} ec2-user@{address}")


@app.command("list")
def list_instances(
    all_states: Annotated[bool, typer.Option("--all", help="Include terminated ones.")] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """List your instances."""
    api = Api(endpoint, region, profile, data_dir)
    out = api.call("describe_instances")
    found = [i for r in out["Reservations"] for i in r["Instances"]]
    if not all_states:
        found = [i for i in found if i["State"]["Name"] != "terminated"]
    if as_json:
        print_json(found)
        return
    table = Table("InstanceId", "Name", "State", "Type", "ImageId", "PublicIp", "Launched")
    for inst in found:
        table.add_row(
            inst["InstanceId"],
            _name(inst),
            inst["State"]["Name"],
            inst["InstanceType"],
            inst["ImageId"],
            inst.get("PublicIpAddress") or "-",
            str(inst["LaunchTime"])[:19],
        )
    Console().print(table)


@app.command("show")
def show(
    instance_id: InstanceArg,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show one instance as JSON."""
    print_json(_instance(Api(endpoint, region, profile, data_dir), instance_id))


def _change(action: str, key: str, instance_ids: list[str], api: Api) -> None:
    for item in api.call(action, InstanceIds=instance_ids)[key]:
        typer.echo(
            f"{item['InstanceId']}: {item['PreviousState']['Name']} → "
            f"{item['CurrentState']['Name']}"
        )


def _state_command(name: str, action: str, result_key: str, doc: str) -> None:
    """Register ``goldsmith instances NAME IDS…`` calling the EC2 state change ``action``."""

    def command(
        instance_ids: Annotated[list[str], typer.Argument(help="Instance ids.")],
        endpoint: EndpointOption = DEFAULT_ENDPOINT,
        region: RegionOption = "us-east-1",
        profile: ProfileOption = None,
        data_dir: DataDirOption = None,
    ) -> None:
        _change(action, result_key, instance_ids, Api(endpoint, region, profile, data_dir))

    command.__doc__ = doc
    app.command(name)(command)


_state_command(
    "stop",
    "stop_instances",
    "StoppingInstances",
    "Stop instances (clean shutdown; volumes are kept).",
)
_state_command("start", "start_instances", "StartingInstances", "Start stopped instances.")
_state_command(
    "terminate",
    "terminate_instances",
    "TerminatingInstances",
    "Terminate instances (DeleteOnTermination volumes are deleted).",
)


def ssh(
    instance_id: InstanceArg,
    command: Annotated[list[str] | None, typer.Argument(help="Command to run.")] = None,
    identity: Annotated[
        Path | None,
        typer.Option(
            "-i", "--identity", help="Private key (default: ~/.goldsmith/keys/<KeyName>.pem)."
        ),
    ] = None,
    user: Annotated[str, typer.Option("--user", "-l", help="User name.")] = "ec2-user",
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """SSH into an instance (runs the system's ssh)."""
    inst = _instance(Api(endpoint, region, profile, data_dir), instance_id)
    address = inst.get("PublicIpAddress")
    if inst["State"]["Name"] != "running" or not address:
        raise fail(f"{instance_id} is {inst['State']['Name']}")
    key = identity or (KEYS_DIR / f"{inst.get('KeyName')}.pem")
    args = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    if key.exists():
        args += ["-i", str(key)]
    os.execvp("ssh", [*args, f"{user}@{address}", *(command or [])])


def console(
    instance_id: InstanceArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output.")
    ] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print an instance's serial console (GetConsoleOutput)."""
    api = Api(endpoint, region, profile, data_dir)
    seen = ""
    while True:
        text = api.call("get_console_output", InstanceId=instance_id).get("Output") or ""
        typer.echo(text[len(seen) :] if text.startswith(seen) else text, nl=False)
        seen = text
        if not follow:
            return
        time.sleep(1)


def create_image(
    instance_id: InstanceArg,
    name: Annotated[str, typer.Option("--name", help="Image name.")],
    description: Annotated[str | None, typer.Option("--description", help="Description.")] = None,
    no_reboot: Annotated[
        bool, typer.Option("--no-reboot", help="Do not shut the instance down (crash-consistent).")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until available.")] = True,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    region: RegionOption = "us-east-1",
    profile: ProfileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an image from an instance (CreateImage) and wait until it is available."""
    api = Api(endpoint, region, profile, data_dir)
    params: dict[str, Any] = {"InstanceId": instance_id, "Name": name, "NoReboot": no_reboot}
    if description:
        params["Description"] = description
    image_id = api.call("create_image", **params)["ImageId"]
    if wait:
        started = time.monotonic()
        with Console(stderr=True).status(f"{image_id}: pending"):
            while True:
                image = api.call("describe_images", ImageIds=[image_id])["Images"][0]
                if image["State"] != "pending":
                    break
                time.sleep(0.5)
        if image["State"] != "available":
            raise fail(f"{image_id} {image['State']}: {image.get('StateReason')}")
        typer.echo(f"{image_id} available after {time.monotonic() - started:.1f}s", err=True)
    typer.echo(image_id)
