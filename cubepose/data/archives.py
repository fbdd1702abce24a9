"""Extracting a zipped dataset once, next to the archive, and reusing it on later runs.

Extraction goes to a temporary folder renamed into place when complete, with a marker
recording the archive's size and mtime and every file extracted; every member's CRC is
checked while extracting. A folder that exists without a matching marker is never
overwritten, and an outdated extraction is replaced only when it holds nothing but the files
cubepose extracted, as it extracted them: a file the user added or edited there is never lost.

An archive is refused before anything is written when it would expand past the free disk
space or by a ratio only a zip bomb reaches; while extracting, no member may produce more
bytes than its header declares.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import IO

from tqdm import tqdm

from cubepose.errors import DatasetError
from cubepose.io.atomic import atomic_write_text
from cubepose.io.temporary import remove_orphans, temporary_beside

logger = logging.getLogger(__name__)

MARKER = ".cubepose-extracted.json"

# Zip bomb limits. Image datasets barely compress (PNG and JPEG are compressed already: ratio ~1;
# Perception's JSON deflates ~5-20x), while deflate reaches ~1000x on repetitive data, the stuff of
# zip bombs. So more than 100x is refused, once the expansion is large enough to matter: below
# RATIO_CHECKED_ABOVE any ratio is harmless (a zip of a few small JSON files may exceed it).
MAX_COMPRESSION_RATIO = 100
RATIO_CHECKED_ABOVE = 4 * 2**20
# The expansion must fit on the target disk leaving this much free: 5% of the disk, at most 1 GiB,
# so that a full disk does not take down training, logs and checkpoints with it.
DISK_RESERVE_FRACTION = 0.05
DISK_RESERVE_MAX = 2**30
COPY_CHUNK = 2**20  # bytes per read while extracting a member
EXTRA_FILES_NAMED = 5  # user-added files named in the refusal; the rest are counted


def extraction_dir(archive: Path) -> Path:
    """Where ``name.zip`` is extracted: the folder ``name`` beside it."""
    return archive.with_suffix("")


def _fingerprint(archive: Path) -> dict:
    stat = archive.stat()
    return {"archive": archive.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _marker(folder: Path) -> dict | None:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def extract_zip(archive: str | os.PathLike) -> Path:
    """The extracted folder of ``archive``, extracting it first unless an up-to-date copy exists."""
    archive = Path(archive)
    if not archive.is_file():
        raise DatasetError(f"dataset archive {archive} does not exist; check data/<split>/root")
    target = extraction_dir(archive)
    fingerprint = _fingerprint(archive)
    marker = _existing_marker(archive, target)
    if marker is not None and {k: marker.get(k) for k in fingerprint} == fingerprint:
        return target
    try:
        with zipfile.ZipFile(archive) as handle:
            members = handle.infolist()
            check_expansion(archive, members, target.parent)
            if marker is not None:
                logger.info("%s changed since it was extracted; extracting it again", archive)
                _check_only_ours(archive, target, marker, {name for m in members if (name := member_path(m))})
            _extract(handle, archive, target, fingerprint)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as err:
        raise DatasetError(f"{archive} is not a valid zip archive ({err}); download or export it again") from err
    except (NotImplementedError, RuntimeError) as err:  # e.g. Deflate64 (Windows' zips of large files), encryption
        raise DatasetError(
            f"cubepose cannot extract {archive} ({err}); extract it yourself and point data/<split>/root at the folder"
        ) from err
    except OSError as err:
        raise DatasetError(f"cannot extract {archive} into {target.parent}: {err}") from err
    logger.info("extracted %s to %s", archive, target)
    return target


def _existing_marker(archive: Path, target: Path) -> dict | None:
    """The marker of an earlier extraction into ``target``; None when there is no folder yet.

    A folder without a marker was not made by cubepose, so it is refused rather than replaced.
    """
    if not target.exists():
        return None
    marker = _marker(target)
    if marker is None:
        raise DatasetError(
            f"{target} exists but was not extracted from {archive.name} by cubepose; set data/<split>/root "
            f"to {target} to use it, or move it away so the archive can be extracted"
        )
    return marker


def check_expansion(archive: Path, members: list[zipfile.ZipInfo], destination: Path) -> None:
    """Refuse ``archive`` before extracting when its members' declared sizes would not fit on the disk of
    ``destination`` or expand it more than ``MAX_COMPRESSION_RATIO`` times (a zip bomb)."""
    total = sum(member.file_size for member in members)
    usage = shutil.disk_usage(destination)
    reserve = min(DISK_RESERVE_MAX, int(usage.total * DISK_RESERVE_FRACTION))
    if total + reserve > usage.free:
        raise DatasetError(
            f"{archive} would expand to {_size(total)} (the declared sizes of its {len(members)} members), but "
            f"{destination} has {_size(usage.free)} free and cubepose keeps {_size(reserve)} of its disk free: "
            "make room there, or extract it yourself onto a larger disk and point data/<split>/root at the folder"
        )
    archive_size = max(1, archive.stat().st_size)
    ratio = total / archive_size
    if total > RATIO_CHECKED_ABOVE and ratio > MAX_COMPRESSION_RATIO:
        raise DatasetError(
            f"{archive} would expand {ratio:.0f}x, from {_size(archive_size)} to {_size(total)}; cubepose refuses "
            f"archives that expand more than {MAX_COMPRESSION_RATIO}x (image datasets barely compress, zip bombs "
            "do): if you trust it, extract it yourself and point data/<split>/root at the folder"
        )


def member_path(member: zipfile.ZipInfo) -> str | None:
    """Where a file member lands under the extraction folder (POSIX, relative); None for a folder entry."""
    if member.is_dir():
        return None
    return "/".join(_safe_parts(member.filename)) or None


def _safe_parts(name: str) -> list[str]:
    """A member name's path parts as ``ZipFile.extract`` keeps them: without empty, ``.`` and ``..``
    parts, so nothing lands outside the extraction folder."""
    return [part for part in name.split("/") if part not in ("", ".", "..")]


def _extract(handle: zipfile.ZipFile, archive: Path, target: Path, fingerprint: dict) -> None:
    """Extract every member into a temporary folder beside ``target``, then put it in ``target``'s place."""
    remove_orphans(target.parent, target.name)  # left by extractions that were killed
    with temporary_beside(target, folder=True) as staging:
        for member in tqdm(handle.infolist(), desc=f"extracting {archive.name}", unit="file", leave=False):
            _extract_member(handle, member, staging, archive)
        crcs = {name: member.CRC for member in handle.infolist() if (name := member_path(member))}
        record = {**fingerprint, "extracted": sorted(_files_under(staging)), "contents": _contents(staging, crcs)}
        atomic_write_text(staging / MARKER, json.dumps(record))
        if target.exists():  # an outdated extraction: checked again, files may have been added meanwhile
            _check_replaceable(archive, target, {name for m in handle.infolist() if (name := member_path(m))})
            shutil.rmtree(target)
        os.replace(staging, target)


def _extract_member(handle: zipfile.ZipFile, member: zipfile.ZipInfo, staging: Path, archive: Path) -> None:
    """Write one member under ``staging``, reading it to the end (which checks its CRC) with a byte cap."""
    if member.is_dir():
        staging.joinpath(*_safe_parts(member.filename)).mkdir(parents=True, exist_ok=True)
        return
    relative = member_path(member)
    if relative is None:
        return
    destination = staging.joinpath(*relative.split("/"))
    destination.parent.mkdir(parents=True, exist_ok=True)
    with handle.open(member) as source, open(destination, "wb") as out:
        copy_capped(source, out, member.file_size, f"member {member.filename} of {archive}")


def copy_capped(source: IO[bytes], destination: IO[bytes], limit: int, what: str) -> int:
    """Copy ``source`` to ``destination`` in chunks, refusing to write more than ``limit`` bytes.

    The header's size is not trusted: a member that inflates past it is a damaged or hostile
    archive, stopped after ``limit`` bytes rather than left to fill the disk. Returns the bytes copied.
    """
    copied = 0
    while chunk := source.read(COPY_CHUNK):
        copied += len(chunk)
        if copied > limit:
            raise DatasetError(
                f"{what} expands past the {limit:,} bytes its header declares (a damaged or hostile archive); "
                "download or export it again"
            )
        destination.write(chunk)
    return copied


def _check_replaceable(archive: Path, target: Path, new_members: set[str]) -> None:
    """Refuse to replace ``target`` unless it is an extraction of cubepose's holding only its files."""
    marker = _marker(target)
    if marker is None:
        raise DatasetError(
            f"{target} appeared while {archive.name} was being extracted, and cubepose did not make it; "
            f"move it away, or set data/<split>/root to it"
        )
    _check_only_ours(archive, target, marker, new_members)


def _check_only_ours(archive: Path, target: Path, marker: dict, new_members: set[str]) -> None:
    """Refuse to replace ``target`` when it holds a file cubepose did not extract there.

    The marker lists the files extracted. A marker written before that list existed holds only a
    count, which proves nothing (a file added and one deleted keep the count), so such a folder is
    replaced only when every file in it is re-created by the new archive: nothing that exists only
    in the folder can be lost. Otherwise the user moves the files or deletes the folder.
    """
    recorded = marker.get("extracted")
    ours = set(recorded) if isinstance(recorded, list) else new_members
    present = _files_under(target)
    changed = _changed_files(target, marker.get("contents"), present & ours)
    if changed:
        named = ", ".join(changed[:EXTRA_FILES_NAMED])
        more = f" and {len(changed) - EXTRA_FILES_NAMED} more" if len(changed) > EXTRA_FILES_NAMED else ""
        raise DatasetError(
            f"{archive.name} changed, but {len(changed)} file(s) in {target} were edited after cubepose extracted "
            f"them: {named}{more}; extracting it again would overwrite your edits, so copy them out of the folder, "
            "or delete the folder yourself, then run again"
        )
    extra = sorted(present - ours)
    if not extra:
        return
    named = ", ".join(extra[:EXTRA_FILES_NAMED])
    more = f" and {len(extra) - EXTRA_FILES_NAMED} more" if len(extra) > EXTRA_FILES_NAMED else ""
    origin = "" if isinstance(recorded, list) else " (an older cubepose extracted it without listing its files)"
    raise DatasetError(
        f"{archive.name} changed, but {target} holds {len(extra)} file(s) that cubepose did not extract from it"
        f"{origin}: {named}{more}; extracting it again would replace the folder, so move those files out of it, "
        "or delete the folder yourself, then run again"
    )


def _contents(folder: Path, crcs: dict[str, int]) -> dict[str, list[int]]:
    """What each extracted file under ``folder`` holds: [size, mtime_ns, CRC-32], the CRC its member declared
    (checked while extracting), so a later edit is found without hashing files whose size and mtime stay."""
    contents = {}
    for name, crc in crcs.items():
        stat = (folder / name).stat()
        contents[name] = [stat.st_size, stat.st_mtime_ns, crc]
    return contents


def _changed_files(folder: Path, contents: object, names: set[str]) -> list[str]:
    """Of ``names`` under ``folder``, those whose contents differ from the marker's record (sorted): a file of
    another size, or of another mtime whose CRC-32 differs. A marker without contents (older) detects none."""
    if not isinstance(contents, dict):
        return []
    changed = []
    for name in sorted(names):
        record = contents.get(name)
        if not (isinstance(record, list) and len(record) == 3):
            continue
        path = folder / name
        if path.is_symlink() or not path.is_file():
            changed.append(name)
            continue
        stat = path.stat()
        if stat.st_size != record[0] or (stat.st_mtime_ns != record[1] and _crc32(path) != record[2]):
            changed.append(name)
    return changed


def _crc32(path: Path) -> int:
    """The CRC-32 of a file's bytes, as zip members record it."""
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _files_under(folder: Path) -> set[str]:
    """Relative POSIX paths of everything under ``folder`` but folders and the marker (files, links, ...).

    A symlink to a folder counts as a file: it is not followed, and removing the tree would remove it.
    """
    found = set()
    for parent, folders, files in os.walk(folder):
        base = Path(parent).relative_to(folder)
        links = [name for name in folders if os.path.islink(os.path.join(parent, name))]
        found.update((base / name).as_posix() for name in (*files, *links))
    found.discard(MARKER)
    return found


def _size(count: int) -> str:
    """A byte count for messages: 688.0 KB, 201.3 MB (powers of 1000, as disk sizes are sold)."""
    if count < 1000:
        return f"{count} bytes"
    value = float(count)
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"
