"""A build's files as they are opened: every .npy header checked against the dtype and shape
the file must have, offsets against what they point into; read into memory or mapped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import IndexCorruptError


@dataclass(frozen=True)
class Opening:
    """How a segment's files are opened: read into memory (`copy`: a small segment) or
    mapped, and the command that rebuilds the index when one of them is found damaged."""

    copy: bool = True
    rebuild: str = "tanya-reindex"

    def array(self, path: Path, dtype: np.dtype | str, shape: tuple[int | None, ...]):
        """open_array with this opening's copy."""
        return open_array(path, dtype, shape, self.copy)


READ_IN = Opening()  # read into memory, rebuilt with the plain command


class Damaged(ValueError):
    """A file of a build does not hold what it must; the message says what it holds."""


def open_array(
    path: Path, dtype: np.dtype | str, shape: tuple[int | None, ...], copy: bool = True
) -> np.ndarray:
    """The array in a .npy file once its header is as expected: `dtype` a numpy dtype or a
    kind letter ("S"), `shape` the length of each axis (None: any); read into memory (read
    only) when `copy`, else mapped. Nothing is allocated before the header is checked,
    whatever size it claims."""
    with open(path, "rb") as file:
        try:
            version = np.lib.format.read_magic(file)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"format version {version}")
            read_header = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
            found_shape, fortran, found_dtype = read_header(file)
        except (ValueError, EOFError) as exc:
            raise Damaged(f"has no readable .npy header ({exc})") from exc
    kind_differs = found_dtype.kind != "S" if dtype == "S" else found_dtype != np.dtype(dtype)
    if kind_differs:
        wanted = "byte string" if dtype == "S" else np.dtype(dtype)
        raise Damaged(f"holds {found_dtype} values where {wanted} ones belong")
    if (
        fortran
        or len(found_shape) != len(shape)
        or any(
            want is not None and got != want for got, want in zip(found_shape, shape, strict=True)
        )
    ):
        expected = str(tuple("any" if n is None else n for n in shape)).replace("'", "")
        raise Damaged(f"has shape {found_shape} where {expected} belongs")
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # the file is shorter than its header says
        raise Damaged(f"is cut short ({exc})") from exc
    if not copy:
        return mapped
    copied = np.array(mapped)
    copied.flags.writeable = False  # as the mapped file would be: a build is never changed
    return copied


def offsets_shape(count: int | None) -> tuple[int | None]:
    """The shape of the offsets of `count` runs (any length when the count is not known)."""
    return (None if count is None else count + 1,)


def check_ends(offsets: np.ndarray, end: int) -> None:
    """Damaged unless the offsets start at 0 and end at `end` (all that opening an archive's
    mapped offsets checks: each run is checked as it is read, see check_runs)."""
    if len(offsets) == 0 or int(offsets[0]) != 0 or int(offsets[-1]) != end:
        raise Damaged(f"holds offsets that do not run from 0 up to {end:,}")


def check_offsets(offsets: np.ndarray, end: int) -> None:
    """Damaged unless the offsets start at 0, never go down, and end at `end`."""
    check_ends(offsets, end)
    if len(offsets) > 1 and bool((np.diff(offsets) < 0).any()):
        raise Damaged(f"holds offsets that do not run from 0 up to {end:,}")


def check_runs(starts: np.ndarray, ends: np.ndarray, bound: int, path: Path, rebuild: str) -> None:
    """IndexCorruptError naming the offsets file unless every run read from it lies in
    [0, bound) and does not end before it starts."""
    starts, ends = np.asarray(starts), np.asarray(ends)
    if len(starts) and (
        int(starts.min()) < 0 or int(ends.max()) > bound or bool((ends < starts).any())
    ):
        raise damaged(path, f"holds offsets outside 0 to {bound:,}", rebuild)


def check_ids(ids: np.ndarray, bound: int, path: Path, what: str, rebuild: str) -> None:
    """IndexCorruptError naming the file unless every id read from it is in [0, bound)."""
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= bound):
        raise damaged(path, f"holds {what} outside 0 to {bound - 1:,}", rebuild)


def damaged(path: Path, detail: str, rebuild: str) -> IndexCorruptError:
    """The error for a file of a build found damaged while it is read: one line, the fix."""
    parts = path.parts
    at = max((i for i, part in enumerate(parts) if part == "segments"), default=len(parts) - 1)
    build, name = Path(*parts[:at]), "/".join(parts[at:])
    return IndexCorruptError(
        f"the index at {build} is damaged: {name} {detail}. Rebuild it with: {rebuild}"
    )
