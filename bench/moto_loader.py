"""Load bench/images.py's images into moto's EC2 backend, then serve them (moto's venv runs it).

Run by bench/images.py with the moto virtualenv's python (this file imports moto, never
goldsmith): ``moto_loader.py DATASET.json PORT READY_FILE``.

Loading goes through moto's own model classes (``moto.ec2.models.amis.Ami``, tags, launch
permissions) in this process, then moto's ``ThreadedMotoServer`` serves that state over
HTTP — the same server ``moto_server`` runs, without 100,000 RegisterImage round trips.

moto has no cross-account visibility: an account sees exactly the images in its own
backend. So every image goes into its owner's backend (all of them are loaded), and the
images the caller (account 0) may see under EC2's rules — other accounts' public and
shared-with-it images, not deprecated — are also put in the caller's backend, so moto's
answers contain what EC2's would. The caller's access key is registered with moto's IAM so
requests signed with it are attributed to its account.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami
from moto.iam.models import iam_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer


def load(spec: dict[str, Any]) -> tuple[int, int]:
    """Put every image in its owner's backend and the caller's visible ones in the caller's."""
    region = spec["region"]
    caller = spec["accounts"][0]
    me = caller["account_id"]
    iam = iam_backends[me]["aws"]
    iam.access_keys[caller["access_key_id"]] = iam.create_temp_access_key()
    mine = ec2_backends[me][region]
    loaded = visible = 0
    for image in spec["images"]:
        backend = ec2_backends[image["owner"]][region]
        ami = Ami(
            backend,
            image["image_id"],
            name=image["name"],
            description=image["description"],
            owner_id=image["owner"],
            public=image["public"],
            virtualization_type="hvm",
            architecture=image["architecture"],
            creation_date=datetime.fromisoformat(image["created_at"]),
            hypervisor="xen",
            root_device_type="ebs",
            root_device_name="/dev/xvda",
            region_name=region,
            boot_mode=image["boot_mode"],
            tags=image["tags"],
        )
        for account in image["shared"]:
            ami.launch_permissions.append({"UserId": account})
        backend.amis[ami.id] = ami
        loaded += 1
        others_visible = (image["public"] or me in image["shared"]) and not image["deprecated"]
        if image["owner"] == me or others_visible:
            mine.amis[ami.id] = ami
            visible += 1
    return loaded, visible


def main() -> None:
    spec_path, port, ready = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    started = time.perf_counter()
    loaded, visible = load(json.loads(spec_path.read_text()))
    seconds = time.perf_counter() - started
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    ready.write_text(
        f"loaded {loaded} images ({visible} visible to the caller) in {seconds:.1f}s, "
        f"serving on port {port}\n"
    )
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
