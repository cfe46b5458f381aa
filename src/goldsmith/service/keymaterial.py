"""The cryptography behind EC2 key pairs: generate, import, fingerprint.

Pure functions over bytes and strings: no I/O, no catalog. Two entry points:

* :func:`generate_key` backs ``CreateKeyPair``. It returns the private key exactly once
  (``KeyMaterial``), the OpenSSH public key (``DescribeKeyPairs IncludePublicKey`` and instance
  metadata) and EC2's fingerprint for a *created* key.
* :func:`import_public_key` backs ``ImportKeyPair``. It accepts what EC2 accepts and rejects
  everything else with ``InvalidKey.Format``; it never raises anything else.

EC2's fingerprints (the "Verify the fingerprint of your key pair" guide, and what users have
observed the live service return):

============  ==========================================  ====================================
key           created by EC2                              imported
============  ==========================================  ====================================
RSA           SHA-1 of the DER PKCS#8 private key,        MD5 of the DER SubjectPublicKeyInfo,
              colon-separated hex                         colon-separated hex
ED25519       base64 SHA-256 of the SSH public key blob   the same
============  ==========================================  ====================================

The ED25519 fingerprint is what ``ssh-keygen -l`` prints *without* the ``SHA256:`` prefix and
*with* base64 padding: EC2 returns e.g. ``HvE7+gmH78VS53+iPuRDh/gKjVo26OzYU/qOnJWAgyk=``. The
RSA "imported" fingerprint is not RFC 4716's MD5 of the SSH blob, whatever the API reference
says: EC2 hashes the DER encoding (``openssl pkey -pubout -outform DER | openssl md5 -c``).

Private key material, as EC2 returns it: RSA keys are 2048-bit, PEM PKCS#1 (``-----BEGIN RSA
PRIVATE KEY-----``); ED25519 keys are in the OpenSSH private key format; ``ppk`` is an
unencrypted ``PuTTY-User-Key-File-2``. EC2's ``KeyMaterial`` ends without a newline (see the
API reference's example response), and so does ours. Whoever writes it to a file must add
one: OpenSSH refuses an OpenSSH-format key without it ("error in libcrypto"), which is why
``aws ... --output text`` adds it.

ImportKeyPair accepts (EC2 User Guide, "import the public key to Amazon EC2"):

* the OpenSSH one-line format ``ssh-rsa|ssh-ed25519 <base64> [comment]``;
* (RSA only) base64-encoded DER (SubjectPublicKeyInfo, or PKCS#1 RSAPublicKey), as in the body
  of a ``-----BEGIN PUBLIC KEY-----`` file, line breaks allowed;
* (RSA only) the SSH public key file format of RFC 4716 (``---- BEGIN SSH2 PUBLIC KEY ----``).

RSA moduli of 1024 to 16384 bits are accepted. EC2 documents "1024, 2048, and 4096", but it
accepts ``ssh-keygen``'s 3072-bit default too; 16384 is the largest key ``ssh-keygen`` makes
and OpenSSL's limit. DSA, ECDSA, security-key and certificate keys are refused. Every refusal
carries EC2's message, ``Key is not in valid OpenSSH public key format``, followed by what was
wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from goldsmith.service.errors import ClientError, invalid_parameter

__all__ = [
    "INVALID_KEY_FORMAT",
    "MAX_MATERIAL_BYTES",
    "RSA_MAX_BITS",
    "RSA_MIN_BITS",
    "GeneratedKey",
    "ImportedKey",
    "KeyFormat",
    "KeyType",
    "generate_key",
    "import_public_key",
]

KeyType = Literal["rsa", "ed25519"]
KeyFormat = Literal["pem", "ppk"]

#: The error code for any public key ImportKeyPair cannot use.
INVALID_KEY_FORMAT = "InvalidKey.Format"
#: Imported material larger than this is refused before it is parsed.
MAX_MATERIAL_BYTES = 16 * 1024
#: RSA modulus sizes accepted by ImportKeyPair.
RSA_MIN_BITS = 1024
RSA_MAX_BITS = 16384
#: CreateKeyPair makes 2048-bit RSA keys with the usual public exponent.
RSA_GENERATED_BITS = 2048
_RSA_PUBLIC_EXPONENT = 65537

_EC2_MESSAGE = "Key is not in valid OpenSSH public key format"
_SSH_RSA = "ssh-rsa"
_SSH_ED25519 = "ssh-ed25519"
_ED25519_KEY_BYTES = 32
_RFC4716_BEGIN = "---- BEGIN SSH2 PUBLIC KEY ----"
_RFC4716_END = "---- END SSH2 PUBLIC KEY ----"
_RFC4716_MAX_TAG = 64
# Canonical, padded base64; OpenSSH refuses anything else too.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_PPK_LINE = 64
_PPK_MAC_KEY_LABEL = b"putty-private-key-file-mac-key"

_PublicKey: TypeAlias = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class GeneratedKey:
    """A key pair made by :func:`generate_key` (CreateKeyPair).

    ``private_key`` is the ``KeyMaterial`` returned once and never stored; ``public_key`` is the
    OpenSSH one-line public key; ``fingerprint`` is EC2's ``KeyFingerprint`` for a created key.
    """

    key_type: KeyType
    private_key: str
    public_key: str
    fingerprint: str


@dataclass(frozen=True)
class ImportedKey:
    """A public key accepted by :func:`import_public_key` (ImportKeyPair).

    ``public_key`` is the OpenSSH one-line form, re-encoded from the parsed key (so it is
    canonical whatever format came in), followed by the comment the user gave, if any (the
    OpenSSH comment, or the RFC 4716 ``Comment`` header). ``fingerprint`` is EC2's
    ``KeyFingerprint`` for an imported key.
    """

    key_type: KeyType
    public_key: str
    fingerprint: str


# --------------------------------------------------------------------------- generation


def generate_key(
    key_type: KeyType = "rsa", key_format: KeyFormat = "pem", *, comment: str = ""
) -> GeneratedKey:
    """Make a new key pair as CreateKeyPair does.

    ``comment`` (EC2 uses the key pair's name) ends the OpenSSH public key line and fills the
    PuTTY file's ``Comment`` header; it must be a single line of printable text. An unknown
    ``key_type`` or ``key_format`` raises ``InvalidParameterValue``.
    """
    if key_type not in ("rsa", "ed25519"):
        raise invalid_parameter(f"Invalid value '{key_type}' for KeyType. Valid: rsa, ed25519")
    if key_format not in ("pem", "ppk"):
        raise invalid_parameter(f"Invalid value '{key_format}' for KeyFormat. Valid: pem, ppk")
    if not _is_printable_line(comment):
        raise ValueError("comment must be a single line of printable text")
    if key_type == "rsa":
        return _generate_rsa(key_format, comment)
    return _generate_ed25519(key_format, comment)


def _generate_rsa(key_format: KeyFormat, comment: str) -> GeneratedKey:
    key = rsa.generate_private_key(
        public_exponent=_RSA_PUBLIC_EXPONENT, key_size=RSA_GENERATED_BITS
    )
    blob = _rsa_blob(key.public_key())
    if key_format == "pem":
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        material = pem.decode("ascii")
    else:
        numbers = key.private_numbers()
        # PuTTY's order: d, p, q, iqmp, with p > q and iqmp = q^-1 mod p (PuTTY repairs
        # other orders on load, other readers of the format may not).
        p, q = max(numbers.p, numbers.q), min(numbers.p, numbers.q)
        private_blob = b"".join(_mpint(value) for value in (numbers.d, p, q, pow(q, -1, p)))
        material = _ppk(_SSH_RSA, blob, private_blob, comment)
    return GeneratedKey(
        key_type="rsa",
        private_key=material.rstrip("\n"),
        public_key=_openssh_line(_SSH_RSA, blob, comment),
        fingerprint=_created_rsa_fingerprint(key),
    )


def _generate_ed25519(key_format: KeyFormat, comment: str) -> GeneratedKey:
    key = ed25519.Ed25519PrivateKey.generate()
    blob = _ed25519_blob(key.public_key())
    if key_format == "pem":
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        material = pem.decode("ascii")
    else:
        # PuTTY keeps the 32-byte private seed as one SSH string.
        material = _ppk(_SSH_ED25519, blob, _string(key.private_bytes_raw()), comment)
    return GeneratedKey(
        key_type="ed25519",
        private_key=material.rstrip("\n"),
        public_key=_openssh_line(_SSH_ED25519, blob, comment),
        fingerprint=_ed25519_fingerprint(blob),
    )


def _ppk(algorithm: str, public_blob: bytes, private_blob: bytes, comment: str) -> str:
    """An unencrypted ``PuTTY-User-Key-File-2``, the version EC2 returns.

    Version 2 rather than 3: every PuTTY reads it (3 needs 0.75+), and unencrypted it needs no
    key derivation. The MAC is HMAC-SHA-1 keyed with SHA-1 of the label plus the (empty)
    passphrase, over the algorithm, encryption, comment and both blobs as SSH strings.
    """
    encryption = "none"
    mac_key = hashlib.sha1(_PPK_MAC_KEY_LABEL).digest()
    mac_data = b"".join(
        _string(field)
        for field in (
            algorithm.encode("ascii"),
            encryption.encode("ascii"),
            comment.encode("utf-8"),
            public_blob,
            private_blob,
        )
    )
    mac = hmac.new(mac_key, mac_data, hashlib.sha1).hexdigest()
    public_lines = _wrap_base64(public_blob)
    private_lines = _wrap_base64(private_blob)
    lines = [
        f"PuTTY-User-Key-File-2: {algorithm}",
        f"Encryption: {encryption}",
        f"Comment: {comment}",
        f"Public-Lines: {len(public_lines)}",
        *public_lines,
        f"Private-Lines: {len(private_lines)}",
        *private_lines,
        f"Private-MAC: {mac}",
    ]
    return "\n".join(lines) + "\n"


def _wrap_base64(data: bytes) -> list[str]:
    text = base64.b64encode(data).decode("ascii")
    return [text[i : i + _PPK_LINE] for i in range(0, len(text), _PPK_LINE)]


# --------------------------------------------------------------------------- import


def import_public_key(material: bytes) -> ImportedKey:
    """Parse the public key a user gave ImportKeyPair (already base64-decoded off the wire).

    Raises ``Ec2Error("InvalidKey.Format", ...)`` for anything unusable, and nothing else.
    """
    text = _decode_text(material)
    if text.startswith("---- BEGIN"):
        key, comment = _parse_rfc4716(text)
    elif text.startswith("-----BEGIN"):
        raise _invalid(
            "PEM files are not accepted; send the OpenSSH public key, or the base64 body alone"
        )
    elif any(char not in _BASE64_CHARS for char in text.split(None, 1)[0]):
        # A key type name ("ssh-rsa") has a character base64 never has.
        key, comment = _parse_openssh(text)
    else:
        key, comment = _parse_der(text), ""
    if isinstance(key, rsa.RSAPublicKey):
        blob = _rsa_blob(key)
        return ImportedKey(
            key_type="rsa",
            public_key=_openssh_line(_SSH_RSA, blob, comment),
            fingerprint=_imported_rsa_fingerprint(key),
        )
    blob = _ed25519_blob(key)
    return ImportedKey(
        key_type="ed25519",
        public_key=_openssh_line(_SSH_ED25519, blob, comment),
        fingerprint=_ed25519_fingerprint(blob),
    )


def _decode_text(material: bytes) -> str:
    """The material as one stripped text, or InvalidKey.Format if it cannot be text."""
    if len(material) > MAX_MATERIAL_BYTES:
        raise _invalid(f"key material is {len(material)} bytes, over {MAX_MATERIAL_BYTES}")
    try:
        text = material.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("key material is not UTF-8 text") from None
    # A byte-order mark is what Windows editors put in front; it is not part of the key.
    text = text.removeprefix("\ufeff").strip()
    if not text:
        raise _invalid("key material is empty")
    return text


def _parse_openssh(text: str) -> tuple[_PublicKey, str]:
    """``<type> <base64 blob> [comment]`` on one line; the blob must name the same type."""
    if "\n" in text or "\r" in text:
        raise _invalid("OpenSSH public key must be a single line (one key)")
    fields = text.split(None, 2)
    key_type = fields[0]
    if key_type not in (_SSH_RSA, _SSH_ED25519):
        raise _unsupported(key_type)
    if len(fields) < 2:
        raise _invalid(f"no key data after '{key_type}'")
    comment = fields[2].strip() if len(fields) == 3 else ""
    if not _is_printable_line(comment):
        raise _invalid("comment contains control characters")
    key = _key_from_blob(_b64decode(fields[1]), expected_type=key_type)
    return key, comment


def _parse_rfc4716(text: str) -> tuple[_PublicKey, str]:
    """RFC 4716: BEGIN line, ``Tag: value`` headers (``\\`` continues), base64 body, END line."""
    lines = [line.strip() for line in text.splitlines()]
    if lines[0] != _RFC4716_BEGIN:
        raise _invalid(f"RFC 4716 key must start with '{_RFC4716_BEGIN}'")
    if len(lines) < 3 or lines[-1] != _RFC4716_END:
        raise _invalid(f"RFC 4716 key must end with '{_RFC4716_END}'")
    body = lines[1:-1]
    headers: dict[str, str] = {}
    index = 0
    while index < len(body) and ":" in body[index]:
        header = body[index]
        index += 1
        while header.endswith("\\"):
            if index >= len(body):
                raise _invalid("RFC 4716 header continues past the end of the key")
            header = header[:-1] + body[index]
            index += 1
        tag, _, value = header.partition(":")
        if not 0 < len(tag) <= _RFC4716_MAX_TAG or not _is_printable_line(tag + value):
            raise _invalid("RFC 4716 header is malformed")
        headers[tag.strip().lower()] = value.strip()
    key = _key_from_blob(_b64decode("".join(body[index:])), expected_type=None)
    if not isinstance(key, rsa.RSAPublicKey):
        raise _invalid("ED25519 keys are accepted only in OpenSSH public key format")
    comment = headers.get("comment", "")
    if len(comment) >= 2 and comment[0] == comment[-1] == '"':
        comment = comment[1:-1].strip()
    return key, comment


def _parse_der(text: str) -> rsa.RSAPublicKey:
    """Base64 DER: SubjectPublicKeyInfo (or PKCS#1), whitespace between lines allowed."""
    der = _b64decode("".join(text.split()))
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise _invalid("not an OpenSSH, RFC 4716 or base64 DER public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise _invalid("only RSA keys are accepted in DER format")
    _check_rsa_size(key.key_size)
    return key


def _key_from_blob(blob: bytes, *, expected_type: str | None) -> _PublicKey:
    """Parse an SSH wire-format public key blob (RFC 4253 6.6), refusing trailing bytes."""
    reader = _BlobReader(blob)
    name = reader.string().decode("ascii", errors="replace")
    if expected_type is not None and name != expected_type:
        raise _invalid(f"key data is not a {expected_type} key")
    if name == _SSH_RSA:
        exponent = reader.mpint()
        modulus = reader.mpint()
        reader.finish()
        return _rsa_public_key(exponent, modulus)
    if name == _SSH_ED25519:
        raw = reader.string()
        reader.finish()
        if len(raw) != _ED25519_KEY_BYTES:
            raise _invalid(f"ED25519 public key is {len(raw)} bytes, not {_ED25519_KEY_BYTES}")
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    raise _unsupported(name)


def _rsa_public_key(exponent: int, modulus: int) -> rsa.RSAPublicKey:
    _check_rsa_size(modulus.bit_length())
    try:
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError:
        raise _invalid("RSA public exponent or modulus is invalid") from None


def _check_rsa_size(bits: int) -> None:
    if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
        raise _invalid(
            f"RSA key length {bits} bits is not supported ({RSA_MIN_BITS} to {RSA_MAX_BITS})"
        )


class _BlobReader:
    """Reads SSH strings and mpints (RFC 4251 5) from a blob, bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def string(self) -> bytes:
        start = self._offset + 4
        if start > len(self._data):
            raise _invalid("key data is truncated")
        length = int.from_bytes(self._data[self._offset : start], "big")
        if length > len(self._data) - start:
            raise _invalid("key data is truncated")
        self._offset = start + length
        return self._data[start : self._offset]

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise _invalid("key data holds a negative number")
        # OpenSSH refuses non-minimal encodings; a key it refuses is of no use on an instance.
        if raw[:1] == b"\x00" and (len(raw) == 1 or not raw[1] & 0x80):
            raise _invalid("key data holds a badly encoded number")
        return int.from_bytes(raw, "big")

    def finish(self) -> None:
        if self._offset != len(self._data):
            raise _invalid("key data has trailing bytes")


def _b64decode(text: str) -> bytes:
    """Strict, canonical base64 (padded, zero trailing bits), as OpenSSH decodes it."""
    if not text:
        raise _invalid("key data is empty")
    if not _BASE64.fullmatch(text):
        raise _invalid("key data is not valid base64 (bad character, length or padding)")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _invalid("key data is not valid base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise _invalid("key data is not canonical base64")
    return data


def _unsupported(key_type: str) -> ClientError:
    shown = key_type if _is_printable_line(key_type) and len(key_type) <= 40 else "unknown"
    return _invalid(f"unsupported key type '{shown}' (only {_SSH_RSA} and {_SSH_ED25519})")


def _invalid(detail: str) -> ClientError:
    return ClientError(INVALID_KEY_FORMAT, f"{_EC2_MESSAGE}: {detail}")


def _is_printable_line(text: str) -> bool:
    """No control characters (tab allowed): safe on one line and in XML."""
    return all(char == "\t" or (char >= " " and char != "\x7f") for char in text)


# --------------------------------------------------------------------------- encodings


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _mpint(value: int) -> bytes:
    """RFC 4251 mpint of a non-negative integer: minimal, with a 0 byte if the top bit is set."""
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return _string(raw)


def _rsa_blob(key: rsa.RSAPublicKey) -> bytes:
    numbers = key.public_numbers()
    return _string(_SSH_RSA.encode("ascii")) + _mpint(numbers.e) + _mpint(numbers.n)


def _ed25519_blob(key: ed25519.Ed25519PublicKey) -> bytes:
    return _string(_SSH_ED25519.encode("ascii")) + _string(key.public_bytes_raw())


def _openssh_line(key_type: str, blob: bytes, comment: str) -> str:
    line = f"{key_type} {base64.b64encode(blob).decode('ascii')}"
    return f"{line} {comment}" if comment else line


# --------------------------------------------------------------------------- fingerprints


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in digest)


def _created_rsa_fingerprint(key: rsa.RSAPrivateKey) -> str:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _colon_hex(hashlib.sha1(der, usedforsecurity=False).digest())


def _imported_rsa_fingerprint(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _colon_hex(hashlib.md5(der, usedforsecurity=False).digest())


def _ed25519_fingerprint(blob: bytes) -> str:
    return base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
