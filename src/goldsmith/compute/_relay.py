"""Relay one guest connection to the metadata service (run by QEMU's slirp per connection).

QEMU's ``guestfwd=tcp:169.254.169.254:80-cmd:…`` starts this script for every TCP
connection the guest opens to the metadata address, with that connection on stdin/stdout.
The script connects to the metadata service from the instance's own loopback address (so
the service can tell instances apart by the peer address, as EC2's does by the source
interface) and copies bytes both ways until both sides are done.

It is run as a file with ``python3 -I -S`` (no site, no goldsmith import) so it starts in
milliseconds. Usage: ``_relay.py SOURCE_HOST TARGET_HOST TARGET_PORT``.
"""

import os
import selectors
import socket
import sys


def _close_guest_writes() -> None:
    """Send EOF to the guest: slirp gave us one socket on fds 0, 1 and 2, so shut it down."""
    try:
        with socket.socket(fileno=os.dup(1)) as out:
            out.shutdown(socket.SHUT_WR)
    except OSError:
        os.close(1)


def main() -> int:
    source, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        sock = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
    except OSError:
        return 1  # stderr is the guest's socket too: say nothing, the guest sees a close
    sock.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "guest")
    sel.register(sock, selectors.EVENT_READ, "service")
    open_sides = 2
    while open_sides:
        events = sel.select(timeout=300)
        if not events:
            break  # idle for 5 minutes: give up rather than live forever
        for key, _ in events:
            if key.data == "guest":
                data = os.read(0, 65536)
                if data:
                    sock.sendall(data)
                else:
                    sel.unregister(0)
                    sock.shutdown(socket.SHUT_WR)
                    open_sides -= 1
            else:
                data = sock.recv(65536)
                if data:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(1, view) :]
                else:
                    sel.unregister(sock)
                    _close_guest_writes()
                    open_sides -= 1
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
