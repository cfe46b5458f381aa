"""Debian packages through the host's APT: resolve candidate versions, download, unpack.

The builders need packages as *files*, not installed on the host: ``apt-get download`` fetches
the exact candidate version into ``<cache>/debs`` (kept between builds, so a warm cache needs
no network), and ``dpkg-deb -x`` unpacks a package into a directory (kept under
``<cache>/unpacked/<deb name>``). Nothing is installed and nothing is written outside the
cache, except that ``apt-get update`` runs once when the host has no package lists at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from goldsmith.builder._common import BuildError, building, run

_LISTS = Path("/var/lib/apt/lists")
_QUIET_APT = ["-o", "APT::Sandbox::User=root", "-q"]


@dataclass(frozen=True)
class Package:
    """One binary package at one version, as APT's candidate."""

    name: str
    version: str
    architecture: str
    depends: tuple[str, ...]

    @property
    def filename(self) -> str:
        """The file name ``apt-get download`` gives it (epoch colon escaped)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"

    @property
    def spec(self) -> str:
        """``name=version``, as the builders record and pin it."""
        return f"{self.name}={self.version}"


def ensure_lists() -> None:
    """Run ``apt-get update`` once if the host has never fetched package lists."""
    if not any(_LISTS.glob("*_Packages*")):
        run(["apt-get", *_QUIET_APT, "update"], timeout=600)


def candidate(name: str) -> Package:
    """The candidate version of ``name`` with its (first-alternative) dependencies."""
    found = candidates([name])
    if name not in found:
        raise BuildError(f"package {name!r} has no candidate version in APT")
    return found[name]


def candidates(names: list[str]) -> dict[str, Package]:
    """Candidates of ``names`` in one ``apt-cache`` call; names without one are left out."""
    ensure_lists()
    signature = _lists_signature()
    key = (signature, tuple(names))
    if key not in _MEMO:
        _MEMO[key] = _query(names)
    return dict(_MEMO[key])


_MEMO: dict[tuple[tuple[tuple[str, float], ...], tuple[str, ...]], dict[str, Package]] = {}


def _lists_signature() -> tuple[tuple[str, float], ...]:
    """Identity of the package lists: a change (apt-get update) invalidates the memo."""
    return tuple(sorted((p.name, p.stat().st_mtime) for p in _LISTS.glob("*_Packages*")))


def _query(names: list[str]) -> dict[str, Package]:
    done = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    found: dict[str, Package] = {}
    for stanza in done.stdout.split("\n\n"):
        fields = _parse_control(stanza)
        if "Package" in fields and "Version" in fields and fields["Package"] not in found:
            found[fields["Package"]] = Package(
                name=fields["Package"],
                version=fields["Version"],
                architecture=fields.get("Architecture", "amd64"),
                depends=_depends(fields),
            )
    return found


def _depends(fields: dict[str, str]) -> tuple[str, ...]:
    deps: list[str] = []
    for key in ("Pre-Depends", "Depends"):
        for clause in filter(None, (c.strip() for c in fields.get(key, "").split(","))):
            first = clause.split("|", 1)[0].strip()
            deps.append(re.split(r"[\s(:]", first, maxsplit=1)[0])
    return tuple(deps)


def closure(names: list[str], skip: frozenset[str] = frozenset()) -> list[Package]:
    """``names`` and everything they depend on (first alternatives), sorted by name.

    Virtual packages that have no candidate of their own are skipped, as are ``skip``.
    """
    seen: dict[str, Package] = {}
    wanted = [n for n in names if n not in skip]
    missing = sorted(set(wanted) - set(candidates(wanted)))
    if missing:
        raise BuildError(f"no candidate version in APT for: {', '.join(missing)}")
    level = wanted
    while level:
        found = candidates(level)
        seen.update(found)
        level = sorted(
            {d for p in found.values() for d in p.depends} - set(seen) - set(skip) - set(level)
        )
    return sorted(seen.values(), key=lambda p: p.name)


def download(cache: Path, pkg: Package) -> Path:
    """The ``.deb`` of ``pkg`` under ``<cache>/debs``, fetched with ``apt-get download`` once."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    target = debs / pkg.filename
    if not target.exists():
        # Download beside the cache, then rename: an interrupted download leaves no .deb.
        with building(debs / f".download-{pkg.name}") as partial:
            run(["apt-get", *_QUIET_APT, "download", pkg.spec], cwd=partial, timeout=900)
            fetched = partial / pkg.filename
            if not fetched.exists():
                raise BuildError(f"apt-get download {pkg.spec} did not produce {target.name}")
            fetched.rename(target)
    return target


def unpack(cache: Path, pkg: Package) -> Path:
    """The unpacked contents of ``pkg`` (``dpkg-deb -x``), cached under ``<cache>/unpacked``."""
    deb = download(cache, pkg)
    final = cache / "unpacked" / deb.stem
    if (final / ".complete").exists():
        return final
    with building(final) as scratch:
        run(["dpkg-deb", "-x", deb, scratch])
        (scratch / ".complete").touch()
    return final


def merge_into(sources: list[Path], dest: Path) -> None:
    """Copy unpacked package trees into one directory (later sources win), keeping symlinks."""
    for source in sources:
        shutil.copytree(
            source,
            dest,
            symlinks=True,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".complete"),
        )


def _parse_control(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in stanza.splitlines():
        if line[:1].isspace() and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields
