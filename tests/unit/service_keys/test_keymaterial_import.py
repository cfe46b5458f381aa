"""ImportKeyPair's parsing and fingerprints, against ssh-keygen and openssl.

Needs the Debian packages openssh-client and openssl.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldsmith.service.errors import Ec2Error
from goldsmith.service.keymaterial import (
    INVALID_KEY_FORMAT,
    MAX_MATERIAL_BYTES,
    ImportedKey,
    import_public_key,
)

EC2_MESSAGE = "Key is not in valid OpenSSH public key format"

# Fixed vectors, made with ssh-keygen; fingerprints computed with
#   ssh-keygen -e -m PKCS8 -f k.pub | openssl pkey -pubin -outform DER | openssl md5 -c
#   ssh-keygen -l -E sha256 -f k.pub   (plus the '=' padding EC2 keeps)
VECTOR_RSA = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCQwwwF+MMmPWa7FEWQ3WGYS8OmG0Bu+VKEcqmKfsmEInRu189wQpw8"
    "tMMEAKKP3zyOgmsWRkWRAqMPQJDKnK7RatIeeB4VmIlUZbPgRezRIgEcRblTIuI3U2UqhpkhZndt6jinZiygiv9MFtbi"
    "xojEFW55JVm6AXF/ufTIzPVWq+hg1ePzFxY0pa3R2j0yvdz1w9IhM77Ho2AtybgYVZGP1cj17yIWnXEMePgNppG5/e2r"
    "VkjQKi53hB9h9GzIuum+4H0yJGseY/JduzgW+iGt3ANIzsAkBZ6c2sr1RbwIr/j3Nt5OddJ2pBJk5HTs6SR9O0aAjF9a"
    "42rgV+0df/jf vector@goldsmith"
)
VECTOR_RSA_FINGERPRINT = "2f:f4:ab:f7:af:1e:98:da:e5:6f:72:e7:3d:4e:85:63"
VECTOR_ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ2QouWRsHVK2t2aOjK0y0xHnfz/sIMrRiGBjHsT7B7D"
    " vector@goldsmith"
)
VECTOR_ED25519_FINGERPRINT = "05p5bkEPhtebZds5gMckdNOxqZWINndoxsQWgkdaon0="


def run(*args: str | Path, stdin: bytes | None = None) -> bytes:
    """Run a tool; fail the test with its stderr if it fails."""
    result = subprocess.run(
        [str(arg) for arg in args], input=stdin, capture_output=True, check=False, timeout=60
    )
    assert result.returncode == 0, f"{args[0]} failed: {result.stderr.decode(errors='replace')}"
    return result.stdout


def ssh_keygen_key(directory: Path, name: str, *options: str) -> Path:
    """A key pair made by ssh-keygen; returns the public key file."""
    path = directory / name
    run("ssh-keygen", "-q", "-N", "", "-C", f"{name}@test", "-f", path, *options)
    return path.with_suffix(".pub")


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Public key files of keys made by ssh-keygen, by name (4096-bit RSA takes ~1 s)."""
    directory = tmp_path_factory.mktemp("ssh-keys")
    keys: dict[str, tuple[str, ...]] = {
        f"rsa{bits}": ("-t", "rsa", "-b", str(bits)) for bits in (1024, 2048, 3072, 4096)
    }
    keys["ed25519"] = ("-t", "ed25519")
    keys["ecdsa"] = ("-t", "ecdsa")
    keys["dsa"] = ("-t", "dsa")
    return {name: ssh_keygen_key(directory, name, *options) for name, options in keys.items()}


def md5_of_openssl_der(public_file: Path) -> str:
    """EC2's imported-RSA fingerprint, computed by ssh-keygen and openssl."""
    pem = run("ssh-keygen", "-e", "-m", "PKCS8", "-f", public_file)
    der = run("openssl", "pkey", "-pubin", "-outform", "DER", stdin=pem)
    return ":".join(f"{byte:02x}" for byte in hashlib.md5(der).digest())


def sha256_of_ssh_keygen(public_file: Path) -> str:
    """EC2's ED25519 fingerprint: ssh-keygen's, without the prefix and with padding."""
    listed = run("ssh-keygen", "-l", "-E", "sha256", "-f", public_file).decode().split()
    return listed[1].removeprefix("SHA256:") + "="


def pem_body(pem: bytes) -> bytes:
    """The base64 lines of a PEM file, without its armour."""
    return b"\n".join(line for line in pem.splitlines() if not line.startswith(b"-----"))


def assert_invalid(material: bytes, detail: str = "") -> None:
    with pytest.raises(Ec2Error) as raised:
        import_public_key(material)
    assert raised.value.code == INVALID_KEY_FORMAT
    assert raised.value.status == 400
    assert raised.value.message.startswith(EC2_MESSAGE)
    assert detail in raised.value.message


# --------------------------------------------------------------------------- vectors


def test_rsa_vector_fingerprint() -> None:
    key = import_public_key(VECTOR_RSA.encode() + b"\n")
    assert key == ImportedKey("rsa", VECTOR_RSA, VECTOR_RSA_FINGERPRINT)


def test_ed25519_vector_fingerprint() -> None:
    key = import_public_key(VECTOR_ED25519.encode() + b"\n")
    assert key == ImportedKey("ed25519", VECTOR_ED25519, VECTOR_ED25519_FINGERPRINT)


# --------------------------------------------------------------------------- OpenSSH format


@pytest.mark.parametrize("name", ["rsa1024", "rsa2048", "rsa3072", "rsa4096"])
def test_openssh_rsa_fingerprint_is_md5_of_der_as_openssl_computes_it(
    name: str, ssh_keys: dict[str, Path]
) -> None:
    public_file = ssh_keys[name]
    key = import_public_key(public_file.read_bytes())
    assert key.key_type == "rsa"
    assert key.public_key == public_file.read_text().strip()
    assert key.fingerprint == md5_of_openssl_der(public_file)


def test_openssh_ed25519_fingerprint_is_sha256_as_ssh_keygen_computes_it(
    ssh_keys: dict[str, Path],
) -> None:
    public_file = ssh_keys["ed25519"]
    key = import_public_key(public_file.read_bytes())
    assert key.key_type == "ed25519"
    assert key.public_key == public_file.read_text().strip()
    assert key.fingerprint == sha256_of_ssh_keygen(public_file)


@pytest.mark.parametrize(
    ("material", "public_key"),
    [
        (VECTOR_ED25519, VECTOR_ED25519),
        (VECTOR_ED25519 + "\r\n", VECTOR_ED25519),
        ("\ufeff" + VECTOR_ED25519 + "\n", VECTOR_ED25519),
        ("  " + VECTOR_ED25519.replace(" ", "\t", 1) + "  \n\n", VECTOR_ED25519),
        (VECTOR_ED25519.rsplit(" ", 1)[0], VECTOR_ED25519.rsplit(" ", 1)[0]),
        (
            VECTOR_ED25519.replace("vector@goldsmith", "two words  ünïcode"),
            VECTOR_ED25519.replace("vector@goldsmith", "two words  ünïcode"),
        ),
    ],
    ids=["bare", "crlf", "bom", "whitespace", "no-comment", "spaces-in-comment"],
)
def test_openssh_line_is_normalised(material: str, public_key: str) -> None:
    key = import_public_key(material.encode())
    assert key.public_key == public_key
    assert key.fingerprint == VECTOR_ED25519_FINGERPRINT


# --------------------------------------------------------------------------- RFC 4716 and DER


@pytest.mark.parametrize("name", ["rsa1024", "rsa2048", "rsa3072", "rsa4096"])
def test_rfc4716_rsa_matches_the_openssh_form(name: str, ssh_keys: dict[str, Path]) -> None:
    public_file = ssh_keys[name]
    rfc4716 = run("ssh-keygen", "-e", "-f", public_file)
    assert rfc4716.startswith(b"---- BEGIN SSH2 PUBLIC KEY ----\n")
    key = import_public_key(rfc4716)
    openssh = import_public_key(public_file.read_bytes())
    bits = name.removeprefix("rsa")
    assert key.public_key.startswith(openssh.public_key.rsplit(" ", 1)[0] + f" {bits}-bit RSA")
    assert key.fingerprint == openssh.fingerprint


def test_rfc4716_headers_continuations_and_crlf() -> None:
    blob = VECTOR_RSA.split()[1]
    lines = [blob[i : i + 70] for i in range(0, len(blob), 70)]
    text = "\r\n".join(
        [
            "---- BEGIN SSH2 PUBLIC KEY ----",
            'Comment: "a comment that runs \\',
            'over two lines"',
            "x-private-header: anything at all",
            *lines,
            "---- END SSH2 PUBLIC KEY ----",
            "",
        ]
    )
    key = import_public_key(text.encode())
    assert key.public_key == VECTOR_RSA.rsplit(" ", 1)[0] + " a comment that runs over two lines"
    assert key.fingerprint == VECTOR_RSA_FINGERPRINT


@pytest.mark.parametrize("export", ["PKCS8", "PEM"], ids=["spki", "pkcs1"])
def test_base64_der_rsa_matches_the_openssh_form(export: str, ssh_keys: dict[str, Path]) -> None:
    public_file = ssh_keys["rsa2048"]
    body = pem_body(run("ssh-keygen", "-e", "-m", export, "-f", public_file))
    openssh = import_public_key(public_file.read_bytes())
    for material in (body, body.replace(b"\n", b""), body + b"\n"):
        key = import_public_key(material)
        assert key.public_key == openssh.public_key.rsplit(" ", 1)[0]  # DER has no comment
        assert key.fingerprint == openssh.fingerprint


# --------------------------------------------------------------------------- refusals


def blob_of(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


def line_of(key_type: str, blob: bytes) -> bytes:
    return f"{key_type} {base64.b64encode(blob).decode()}".encode()


def ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def rsa_blob(e: bytes, n: bytes) -> bytes:
    """An ssh-rsa blob from raw mpint contents (so bad encodings can be made)."""
    return ssh_string(b"ssh-rsa") + ssh_string(e) + ssh_string(n)


def big(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 8) // 8, "big")


def vector_rsa_modulus() -> int:
    key = serialization.load_ssh_public_key(VECTOR_RSA.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key.public_numbers().n


VECTOR_RSA_N = vector_rsa_modulus()
ED25519_RAW = blob_of(VECTOR_ED25519)[-32:]
# A 52-byte blob: its base64 ends in "AA==", so padding and trailing bits can be broken.
PADDED_LINE = line_of("ssh-ed25519", blob_of(VECTOR_ED25519) + b"\x00")

BEGIN = b"---- BEGIN SSH2 PUBLIC KEY ----\n"
END = b"\n---- END SSH2 PUBLIC KEY ----"
ED25519_B64 = VECTOR_ED25519.split()[1].encode()
ED25519_DER = ed25519.Ed25519PublicKey.from_public_bytes(ED25519_RAW).public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
ED25519_BLOB = blob_of(VECTOR_ED25519)
RSA_BLOB = blob_of(VECTOR_RSA)
N = big(VECTOR_RSA_N)
E = big(65537)

BAD_INPUTS = [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b" \n\t\r\n", "empty", id="whitespace"),
    pytest.param(b"hello world", "base64", id="garbage"),
    pytest.param(bytes(range(256)), "UTF-8", id="binary"),
    pytest.param(b"ssh-rsa", "no key data", id="type-only"),
    pytest.param(b"ssh-ed25519 AAAA!AAA", "base64", id="bad-base64-char"),
    pytest.param(b"ssh-ed25519 " + ED25519_B64[:-5], "base64", id="truncated-base64"),
    pytest.param(PADDED_LINE.rstrip(b"="), "base64", id="missing-padding"),
    pytest.param(PADDED_LINE.replace(b"AA==", b"AB=="), "canonical", id="non-canonical-bits"),
    pytest.param(PADDED_LINE + b"==", "base64", id="excess-padding"),
    pytest.param(line_of("ssh-ed25519", ED25519_BLOB[:-3]), "truncated", id="truncated-blob"),
    pytest.param(line_of("ssh-ed25519", ED25519_BLOB + b"\x00"), "trailing", id="blob-junk"),
    pytest.param(line_of("ssh-rsa", RSA_BLOB + ssh_string(b"x")), "trailing", id="rsa-junk"),
    pytest.param(line_of("ssh-rsa", ED25519_BLOB), "not a ssh-rsa key", id="type-mismatch"),
    pytest.param(
        line_of("ssh-ed25519", ssh_string(b"ssh-ed25519") + ssh_string(ED25519_RAW[:31])),
        "31 bytes",
        id="ed25519-short",
    ),
    pytest.param(line_of("ssh-rsa", rsa_blob(E, big((1 << 511) | 1))), "512 bits", id="rsa-512"),
    pytest.param(
        line_of("ssh-rsa", rsa_blob(E, big((1 << 16384) | 1))), "16385 bits", id="rsa-16385"
    ),
    pytest.param(line_of("ssh-rsa", rsa_blob(big(65536), N)), "exponent", id="rsa-even-e"),
    pytest.param(line_of("ssh-rsa", rsa_blob(b"\x81\x01", N)), "negative", id="rsa-negative"),
    pytest.param(
        line_of("ssh-rsa", rsa_blob(b"\x00\x01\x00\x01", N)), "encoded", id="rsa-non-minimal"
    ),
    pytest.param((VECTOR_ED25519 + "\n" + VECTOR_ED25519).encode(), "single line", id="two-keys"),
    pytest.param(VECTOR_ED25519.encode() + b"\x07bell", "control", id="control-in-comment"),
    pytest.param(
        VECTOR_ED25519.encode() + b" " + b"x" * MAX_MATERIAL_BYTES, "over 16384", id="oversize"
    ),
    pytest.param(
        line_of("ssh-dss", ssh_string(b"ssh-dss") + ssh_string(b"\x01") * 4),
        "'ssh-dss'",
        id="dss",
    ),
    pytest.param(
        b"ssh-rsa-cert-v01@openssh.com AAAA",
        "'ssh-rsa-cert-v01@openssh.com'",
        id="certificate",
    ),
    pytest.param(b"sk-ssh-ed25519@openssh.com AAAA", "unsupported key type", id="sk-key"),
    pytest.param(
        b'from="10.0.0.1" ' + VECTOR_ED25519.encode(), "unsupported key type", id="options"
    ),
    pytest.param(
        b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", "PEM", id="pem-armour"
    ),
    pytest.param(BEGIN + b"AAAA\n", "must end with", id="rfc4716-no-end"),
    pytest.param(
        BEGIN.replace(b"PUBLIC", b"PRIVATE") + b"AAAA" + END,
        "must start with",
        id="rfc4716-bad-begin",
    ),
    pytest.param(BEGIN + b"Comment: x\\" + END, "continues past", id="rfc4716-continuation"),
    pytest.param(BEGIN + b"Comment: x" + END, "empty", id="rfc4716-empty-body"),
    pytest.param(BEGIN + ED25519_B64 + END, "only in OpenSSH", id="rfc4716-ed25519"),
    pytest.param(base64.b64encode(b"\x30\x03\x02\x01\x01"), "DER", id="der-garbage"),
    pytest.param(base64.b64encode(ED25519_DER), "only RSA", id="der-ed25519"),
    pytest.param(base64.b64encode(VECTOR_ED25519.encode()), "DER", id="base64-of-openssh"),
]


@pytest.mark.parametrize(("material", "detail"), BAD_INPUTS)
def test_bad_input_is_invalid_key_format(material: bytes, detail: str) -> None:
    assert_invalid(material, detail)


@pytest.mark.parametrize("name", ["ecdsa", "dsa"])
def test_ecdsa_and_dsa_keys_from_ssh_keygen_are_refused(
    name: str, ssh_keys: dict[str, Path]
) -> None:
    assert_invalid(ssh_keys[name].read_bytes(), "unsupported key type")
    assert_invalid(run("ssh-keygen", "-e", "-f", ssh_keys[name]), "unsupported key type")


def test_ecdsa_der_is_refused(ssh_keys: dict[str, Path]) -> None:
    body = pem_body(run("ssh-keygen", "-e", "-m", "PKCS8", "-f", ssh_keys["ecdsa"]))
    assert_invalid(body, "only RSA")


def test_material_at_the_size_limit_is_still_parsed() -> None:
    padded = VECTOR_ED25519.encode().ljust(MAX_MATERIAL_BYTES - 1) + b"\n"
    assert len(padded) == MAX_MATERIAL_BYTES
    assert import_public_key(padded).fingerprint == VECTOR_ED25519_FINGERPRINT


# --------------------------------------------------------------------------- fuzzing


def accepts_or_refuses(material: bytes) -> None:
    """The contract: an ImportedKey, or InvalidKey.Format, and never another exception."""
    try:
        key = import_public_key(material)
    except Ec2Error as refused:
        assert refused.code == INVALID_KEY_FORMAT
        assert refused.message.startswith(EC2_MESSAGE)
    else:
        assert key.key_type in ("rsa", "ed25519")
        assert import_public_key(key.public_key.encode()) == key  # output is a fixed point


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(material: bytes) -> None:
    accepts_or_refuses(material)


@FUZZ
@given(st.text(alphabet='ssh-rsaed25519 AQBCDEFGHIJKLMNOPZaz0189+/=\n\r\t-:\\"', max_size=300))
def test_fuzz_key_like_text(text: str) -> None:
    accepts_or_refuses(text.encode())


def mutations() -> st.SearchStrategy[bytes]:
    """Valid keys in each accepted format, then cut, extended or with bytes replaced."""
    rfc4716 = b"---- BEGIN SSH2 PUBLIC KEY ----\nComment: c\n%s\n---- END SSH2 PUBLIC KEY ----"
    seeds = [
        VECTOR_ED25519.encode(),
        VECTOR_RSA.encode(),
        rfc4716 % VECTOR_RSA.split()[1].encode(),
        base64.b64encode(
            serialization.load_ssh_public_key(VECTOR_RSA.encode()).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ),
    ]

    def mutate(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
        data = bytearray(seed)
        for position, cut, insert in edits:
            at = position % (len(data) + 1)
            data[at : at + cut] = insert
        return bytes(data)

    edit = st.tuples(st.integers(0, 2000), st.integers(0, 3), st.binary(max_size=3))
    return st.builds(mutate, st.sampled_from(seeds), st.lists(edit, min_size=1, max_size=4))


@FUZZ
@given(mutations())
def test_fuzz_mutated_valid_keys(material: bytes) -> None:
    accepts_or_refuses(material)


def test_fuzz_blob_fields_through_the_wire_format() -> None:
    """Every truncation of a valid blob is refused, not crashed on."""
    for key_type, line in (("ssh-rsa", VECTOR_RSA), ("ssh-ed25519", VECTOR_ED25519)):
        blob = blob_of(line)
        for cut in range(len(blob)):
            assert_invalid(line_of(key_type, blob[:cut]))
