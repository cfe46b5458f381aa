"""CreateKeyPair's key material, checked with independent tools (ssh-keygen, openssl, puttygen).

Needs the Debian packages openssh-client, openssl and putty-tools.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from goldsmith.service.errors import Ec2Error
from goldsmith.service.keymaterial import (
    GeneratedKey,
    KeyFormat,
    KeyType,
    generate_key,
    import_public_key,
)

KEY_TYPES: tuple[KeyType, ...] = ("rsa", "ed25519")


def run(*args: str | Path, stdin: bytes | None = None) -> bytes:
    """Run a tool; fail the test with its stderr if it fails."""
    result = subprocess.run(
        [str(arg) for arg in args], input=stdin, capture_output=True, check=False, timeout=60
    )
    assert result.returncode == 0, f"{args[0]} failed: {result.stderr.decode(errors='replace')}"
    return result.stdout


def write_secret(path: Path, text: str) -> Path:
    """Write key material as a user would: with the trailing newline EC2 leaves out."""
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def keys() -> dict[tuple[KeyType, KeyFormat], GeneratedKey]:
    """One key of each type and format (RSA generation costs ~50 ms a key)."""
    return {
        (key_type, key_format): generate_key(key_type, key_format, comment="my-key")
        for key_type in KEY_TYPES
        for key_format in ("pem", "ppk")
    }


def key_only(public_line: str) -> str:
    """An OpenSSH public key line without its comment."""
    return " ".join(public_line.split()[:2])


# --------------------------------------------------------------------------- PEM


def test_rsa_pem_is_a_2048_bit_pkcs1_key_matching_its_public_key(
    keys: dict[tuple[KeyType, KeyFormat], GeneratedKey],
) -> None:
    key = keys["rsa", "pem"]
    assert key.key_type == "rsa"
    assert key.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert key.private_key.endswith("\n-----END RSA PRIVATE KEY-----")
    private = serialization.load_pem_private_key(key.private_key.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert private.public_key().public_numbers().e == 65537
    derived = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert key.public_key == derived.decode() + " my-key"


def test_ed25519_pem_is_an_openssh_private_key_matching_its_public_key(
    keys: dict[tuple[KeyType, KeyFormat], GeneratedKey],
) -> None:
    key = keys["ed25519", "pem"]
    assert key.key_type == "ed25519"
    assert key.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert key.private_key.endswith("\n-----END OPENSSH PRIVATE KEY-----")
    private = serialization.load_ssh_private_key(key.private_key.encode() + b"\n", password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    derived = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert key.public_key == derived.decode() + " my-key"


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_ssh_keygen_derives_the_same_public_key(
    key_type: KeyType, keys: dict[tuple[KeyType, KeyFormat], GeneratedKey], tmp_path: Path
) -> None:
    key = keys[key_type, "pem"]
    private = write_secret(tmp_path / "key.pem", key.private_key)
    assert key_only(run("ssh-keygen", "-y", "-f", private).decode()) == key_only(key.public_key)


@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize("key_format", ["pem", "ppk"])
def test_key_material_has_no_trailing_newline_like_ec2(
    key_type: KeyType, key_format: KeyFormat, keys: dict[tuple[KeyType, KeyFormat], GeneratedKey]
) -> None:
    material = keys[key_type, key_format].private_key
    assert material == material.strip()


# --------------------------------------------------------------------------- fingerprints


@pytest.mark.parametrize("key_format", ["pem", "ppk"])
def test_created_rsa_fingerprint_is_sha1_of_the_pkcs8_der_as_openssl_computes_it(
    key_format: KeyFormat, keys: dict[tuple[KeyType, KeyFormat], GeneratedKey], tmp_path: Path
) -> None:
    key = keys["rsa", key_format]
    pem = keys["rsa", "pem"].private_key if key_format == "pem" else ppk_to_pem(key, tmp_path)
    private = write_secret(tmp_path / "key.pem", pem)
    der = run("openssl", "pkcs8", "-topk8", "-nocrypt", "-in", private, "-outform", "DER")
    expected = ":".join(f"{byte:02x}" for byte in hashlib.sha1(der).digest())
    assert key.fingerprint == expected
    assert len(key.fingerprint) == 59  # 20 bytes: EC2's created-RSA fingerprint length


@pytest.mark.parametrize("key_format", ["pem", "ppk"])
def test_created_ed25519_fingerprint_is_ssh_keygens_sha256_padded(
    key_format: KeyFormat, keys: dict[tuple[KeyType, KeyFormat], GeneratedKey], tmp_path: Path
) -> None:
    key = keys["ed25519", key_format]
    public = tmp_path / "key.pub"
    public.write_text(key.public_key + "\n")
    listed = run("ssh-keygen", "-l", "-E", "sha256", "-f", public).decode().split()
    assert listed[1].startswith("SHA256:")
    assert key.fingerprint == listed[1].removeprefix("SHA256:") + "="
    assert len(key.fingerprint) == 44


def test_reimporting_a_created_key_gives_the_import_fingerprint(
    keys: dict[tuple[KeyType, KeyFormat], GeneratedKey],
) -> None:
    # EC2 hashes RSA keys differently by origin, so a re-imported key changes fingerprint;
    # ED25519 fingerprints do not depend on origin.
    rsa_key = keys["rsa", "pem"]
    reimported = import_public_key(rsa_key.public_key.encode())
    assert reimported.public_key == rsa_key.public_key
    assert reimported.fingerprint != rsa_key.fingerprint
    assert len(reimported.fingerprint) == 47  # 16 bytes of MD5
    ed_key = keys["ed25519", "pem"]
    assert import_public_key(ed_key.public_key.encode()).fingerprint == ed_key.fingerprint


# --------------------------------------------------------------------------- PPK


def ppk_to_pem(key: GeneratedKey, tmp_path: Path, fmt: str = "private-openssh") -> str:
    """The PPK's private key as puttygen converts it (reading it checks the MAC)."""
    ppk = write_secret(tmp_path / "key.ppk", key.private_key)
    out = tmp_path / "converted"
    run("puttygen", ppk, "-O", fmt, "-o", out)
    return out.read_text().strip()


def parse_ppk(text: str) -> dict[str, str]:
    """Headers of a PPK v2 file, with each multi-line blob joined under its name."""
    lines = text.split("\n")
    fields: dict[str, str] = {}
    index = 0
    while index < len(lines):
        name, _, value = lines[index].partition(": ")
        index += 1
        if name.endswith("-Lines"):
            count = int(value)
            fields[name.removesuffix("-Lines")] = "".join(lines[index : index + count])
            index += count
        else:
            fields[name] = value
    return fields


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_ppk_is_version_2_unencrypted_with_a_correct_mac(
    key_type: KeyType, keys: dict[tuple[KeyType, KeyFormat], GeneratedKey]
) -> None:
    """Recompute the MAC from PuTTY's spec (sshpubk.c, PPK version 2)."""
    key = keys[key_type, "ppk"]
    fields = parse_ppk(key.private_key)
    algorithm = "ssh-rsa" if key_type == "rsa" else "ssh-ed25519"
    assert list(fields) == [
        "PuTTY-User-Key-File-2",
        "Encryption",
        "Comment",
        "Public",
        "Private",
        "Private-MAC",
    ]
    assert fields["PuTTY-User-Key-File-2"] == algorithm
    assert fields["Encryption"] == "none"
    assert fields["Comment"] == "my-key"
    public_blob = base64.b64decode(fields["Public"], validate=True)
    assert public_blob == base64.b64decode(key.public_key.split()[1])

    def string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    mac_data = b"".join(
        string(part)
        for part in (
            algorithm.encode(),
            b"none",
            b"my-key",
            public_blob,
            base64.b64decode(fields["Private"], validate=True),
        )
    )
    mac_key = hashlib.sha1(b"putty-private-key-file-mac-key").digest()
    assert fields["Private-MAC"] == hmac.new(mac_key, mac_data, hashlib.sha1).hexdigest()
    assert all(len(line) <= 64 for line in key.private_key.split("\n"))


def read_mpints(blob: bytes) -> list[int]:
    values = []
    while blob:
        length = int.from_bytes(blob[:4], "big")
        values.append(int.from_bytes(blob[4 : 4 + length], "big"))
        blob = blob[4 + length :]
    return values


def test_rsa_ppk_private_blob_is_d_p_q_iqmp_in_puttys_convention(
    keys: dict[tuple[KeyType, KeyFormat], GeneratedKey],
) -> None:
    """PuTTY silently repairs p < q or a wrong iqmp, so check the blob itself."""
    fields = parse_ppk(keys["rsa", "ppk"].private_key)
    e, n = read_mpints(base64.b64decode(fields["Public"])[4 + len("ssh-rsa") :])
    d, p, q, iqmp = read_mpints(base64.b64decode(fields["Private"]))
    assert p * q == n
    assert p > q
    assert iqmp * q % p == 1
    assert e * d % (p - 1) == 1
    assert e * d % (q - 1) == 1


def test_ed25519_ppk_private_blob_is_the_seed_of_the_public_key(
    keys: dict[tuple[KeyType, KeyFormat], GeneratedKey],
) -> None:
    fields = parse_ppk(keys["ed25519", "ppk"].private_key)
    private_blob = base64.b64decode(fields["Private"])
    assert private_blob[:4] == (32).to_bytes(4, "big")
    seed = ed25519.Ed25519PrivateKey.from_private_bytes(private_blob[4:])
    public_raw = base64.b64decode(fields["Public"])[-32:]
    assert seed.public_key().public_bytes_raw() == public_raw


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_puttygen_reads_the_ppk_and_agrees_on_the_public_key(
    key_type: KeyType, keys: dict[tuple[KeyType, KeyFormat], GeneratedKey], tmp_path: Path
) -> None:
    key = keys[key_type, "ppk"]
    ppk = write_secret(tmp_path / "key.ppk", key.private_key)
    public = run("puttygen", ppk, "-O", "public-openssh", "-o", "/dev/stdout").decode().strip()
    assert public == key.public_key  # comment included: it is the PPK's Comment


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_ppk_private_key_signs_for_its_public_key(
    key_type: KeyType, keys: dict[tuple[KeyType, KeyFormat], GeneratedKey], tmp_path: Path
) -> None:
    """The private half survives PuTTY's reading: a signature verifies with the public key."""
    key = keys[key_type, "ppk"]
    private = serialization.load_ssh_private_key(
        ppk_to_pem(key, tmp_path, "private-openssh-new").encode() + b"\n", password=None
    )
    public = serialization.load_ssh_public_key(key.public_key.encode())
    message = b"goldsmith"
    if isinstance(private, rsa.RSAPrivateKey):
        assert isinstance(public, rsa.RSAPublicKey)
        signature = private.sign(message, padding.PKCS1v15(), hashes.SHA256())
        public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        assert private.private_numbers().p * private.private_numbers().q == (
            public.public_numbers().n
        )
    else:
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(private.sign(message), message)


def test_puttygen_rejects_a_ppk_whose_mac_does_not_match(
    keys: dict[tuple[KeyType, KeyFormat], GeneratedKey], tmp_path: Path
) -> None:
    """Proves puttygen checks the MAC, so the agreement above is not vacuous."""
    tampered = keys["ed25519", "ppk"].private_key.replace("Comment: my-key", "Comment: my-kez")
    ppk = write_secret(tmp_path / "key.ppk", tampered)
    result = subprocess.run(
        ["puttygen", str(ppk), "-O", "private-openssh-new", "-o", str(tmp_path / "out")],
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0
    assert b"MAC" in result.stderr or b"corrupt" in result.stderr.lower()


# --------------------------------------------------------------------------- arguments


def test_each_call_makes_a_new_key() -> None:
    first, second = generate_key("ed25519"), generate_key("ed25519")
    assert first.public_key != second.public_key
    assert first.fingerprint != second.fingerprint


def test_defaults_are_rsa_pem_without_comment() -> None:
    key = generate_key()
    assert key.key_type == "rsa"
    assert key.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert len(key.public_key.split()) == 2


@pytest.mark.parametrize(("key_type", "key_format"), [("dsa", "pem"), ("rsa", "der")])
def test_unknown_type_or_format_is_invalid_parameter_value(key_type: str, key_format: str) -> None:
    with pytest.raises(Ec2Error) as raised:
        generate_key(key_type, key_format)  # type: ignore[arg-type]
    assert raised.value.code == "InvalidParameterValue"


@pytest.mark.parametrize("comment", ["two\nlines", "cr\r", "nul\x00"])
def test_comment_must_be_one_printable_line(comment: str) -> None:
    with pytest.raises(ValueError, match="comment"):
        generate_key("ed25519", comment=comment)
