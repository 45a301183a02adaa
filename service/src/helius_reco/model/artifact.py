"""The model artifact: one `.npz` of plain arrays, read with `allow_pickle=False`.

`decode` is the trust boundary for bytes from the registry or the disk cache: anything that
is not exactly the expected arrays, dtypes, shapes and value ranges raises `ArtifactError`.
No code in an artifact is ever run (no pickle, no object arrays, no custom classes).

Sizes are judged before anything is inflated: first the zip directory (each member's declared
uncompressed size, their sum, the compression ratio), then each member's `.npy` header (its
dtype and shape, so its size, alone and summed), which only needs the first few hundred bytes
of each member. A member is read only once every one of them has passed, and `zipfile` never
inflates past the size the directory declares, which must be the header's to the byte. So a
small file that inflates to gigabytes, or declares a huge shape, costs no memory; running out
of memory anyway is a rejection like any other.

Before even that, the zip's end record is read by hand (the last bytes of the file): a
directory that declares more members than the eight arrays, or more bytes than eight entries
take, is refused before `zipfile` parses it (700,000 empty members cost zipfile seconds and
hundreds of MiB). Dtypes are exact, the ones the model keeps: an array the model would have
to convert (int8 neighbours widened to int32, float16 scores, byte-swapped arrays) is refused,
so that what the headers declare is what the model holds. And one training user's history x
K, the neighbour entries a ranking of that user sums, is bounded (`max_history_neighbors`),
judged from `history_indptr` and the neighbours' header before any large array is read.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from helius_reco.exceptions import ArtifactError
from helius_reco.model.recommender import DIGEST_CHARS, FORMAT_VERSION, RecoModel

ARTIFACT_FILE = "reco.npz"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # the file as fetched (compressed)
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024  # all its arrays, inflated
# A member larger than this that deflates better than MAX_COMPRESSION_RATIO:1 is refused.
# Trained models deflate 2-10:1 (id strings compress best); zeros deflate about 1000:1.
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECKED_ABOVE = 1024 * 1024
_MAX_ITEMS = 1_000_000
# Each id also becomes a Python string in the model's lookup tables (list and dict entries):
# about 230 bytes measured, whatever its size in the array. Charged against the cap with the
# array, so that the cap bounds the model in memory, not only its arrays.
ID_LOOKUP_BYTES = 256
_ID_ARRAYS = frozenset({"item_ids", "user_ids"})
_MAX_NEIGHBORS = 1_000
# a training user's history length x K: the neighbour entries one ranking of that user sums
# (the trained model: at most 40 x 30 = 1,200; 1e6 is ranked in ~10 ms)
DEFAULT_MAX_HISTORY_NEIGHBORS = 1_000_000
# Read from the end record before zipfile parses the directory. Eight entries take under
# 1 KiB (46 bytes + the name + a zip64 extra each); a few more members than eight are let
# through to `_check_directory`, which names them.
_MAX_MEMBERS = 64
_MAX_DIRECTORY_BYTES = 16 * 1024
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record
_MAX_COMMENT = 65535
_READ_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    RuntimeError,
    NotImplementedError,
    OverflowError,
)

_EXPECTED_KINDS = {
    "format_version": "i",
    "item_ids": "U",
    "popularity": "f",
    "neighbors": "i",
    "neighbor_scores": "f",
    "user_ids": "U",
    "history_indptr": "i",
    "history_indices": "i",
}
_EXPECTED_FILES = {f"{name}.npy" for name in _EXPECTED_KINDS}
# The exact dtypes the model keeps (ids: any width of native unicode; format_version: any
# integer, it is one element). Anything else would be converted, so cost more than declared.
_EXACT_DTYPES: dict[str, np.dtype[np.generic]] = {
    "popularity": np.dtype(np.float32),
    "neighbors": np.dtype(np.int32),
    "neighbor_scores": np.dtype(np.float32),
    "history_indptr": np.dtype(np.int64),
    "history_indices": np.dtype(np.int32),
}


@dataclass(frozen=True)
class _Member:
    """A zip member whose directory entry and `.npy` header have been checked."""

    name: str  # the array name (member name without `.npy`)
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    cost: int  # bytes in memory as its header declares it (>= 1 per element; ids more)


def encode(model: RecoModel) -> bytes:
    """The artifact bytes for `model` (compressed npz)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **model.arrays())  # type: ignore[arg-type]
    return buffer.getvalue()


def artifact_digest(data: bytes) -> str:
    """The short sha256 of artifact bytes a served answer names its model by."""
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def decode(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    max_history_neighbors: int = DEFAULT_MAX_HISTORY_NEIGHBORS,
) -> RecoModel:
    """Validate and load artifact bytes; raise `ArtifactError` saying what is wrong.

    `max_bytes` bounds the file, `max_decompressed_bytes` what it takes in memory once
    inflated (its arrays, and the lookup tables of its ids; each array and the sum), both
    checked before any array is read; `max_history_neighbors` one training user's history
    length x K, checked before any array but the history pointer is read.
    """
    if len(data) > max_bytes:
        raise ArtifactError(f"artifact is {len(data)} bytes, above the {max_bytes}-byte limit")
    if not data:
        raise ArtifactError("artifact is empty")
    _check_end_record(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = _check_directory(archive, max_decompressed_bytes)
            members = [_check_header(archive, info, max_decompressed_bytes) for info in infos]
            total = sum(member.cost for member in members)
            if total > max_decompressed_bytes:
                raise ArtifactError(
                    _over_cap("arrays declare in total", total, max_decompressed_bytes)
                )
            # the history pointer first: a history too long to rank is refused before the
            # large arrays are read
            members.sort(key=lambda member: member.name != "history_indptr")
            arrays: dict[str, npt.NDArray[np.generic]] = {}
            for member in members:
                arrays[member.name] = _read(archive, member)
                if member.name == "history_indptr":
                    neighbors = next(m for m in members if m.name == "neighbors")
                    _check_history_work(arrays[member.name], neighbors.shape, max_history_neighbors)
        model = _build(arrays)
        object.__setattr__(model, "artifact_digest", artifact_digest(data))
        return model
    except ArtifactError:
        raise
    except MemoryError as exc:  # a rejection like any other: the previous model keeps serving
        raise ArtifactError(f"artifact needs more memory than is available: {exc}") from exc
    except _READ_ERRORS as exc:
        raise ArtifactError(f"artifact is not a readable plain-data npz: {exc}") from exc


def _check_end_record(data: bytes) -> None:
    """What the zip's end record declares (members, directory size), read by hand before
    `zipfile` parses the directory: it would parse every entry there is, at any count.
    Found as `zipfile` finds it (the last signature in the final 64 KiB + 22 bytes, and a
    zip64 record right before it when its locator is there)."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - _END.size - _MAX_COMMENT))
    if at < 0 or at + _END.size > len(data):
        return  # not a zip: zipfile says so
    _, _, _, on_disk, entries, size, _, _ = _END.unpack_from(data, at)
    members = max(on_disk, entries)
    locator = at - _END64_LOCATOR.size
    if locator >= 0 and data.startswith(b"PK\x06\x07", locator):
        # zipfile reads the zip64 record right before the locator; the locator also gives
        # its offset: every candidate is judged, so no reader finds a larger one
        _, _, offset, _ = _END64_LOCATOR.unpack_from(data, locator)
        candidates = {locator - _END64.size, offset}
        members, size = (
            0 if members == 0xFFFF else members,  # placeholders for the zip64 values
            0 if size == 0xFFFFFFFF else size,
        )
        found = False
        for end64 in candidates:
            if 0 <= end64 <= len(data) - _END64.size and data.startswith(b"PK\x06\x06", end64):
                _, _, _, _, _, _, on_disk64, entries64, size64, _ = _END64.unpack_from(data, end64)
                members = max(members, on_disk64, entries64)
                size = max(size, size64)
                found = True
        if not found:
            raise ArtifactError("artifact's zip64 end record is missing or corrupt")
    if members > _MAX_MEMBERS:
        raise ArtifactError(
            f"artifact's zip directory declares {members} members, expected {len(_EXPECTED_FILES)}"
        )
    if size > _MAX_DIRECTORY_BYTES:
        raise ArtifactError(
            f"artifact's zip directory is {size} bytes, above the {_MAX_DIRECTORY_BYTES}-byte "
            f"limit (the {len(_EXPECTED_FILES)} members take under 1 KiB)"
        )


def _check_history_work(
    indptr: npt.NDArray[np.generic], neighbors_shape: tuple[int, ...], limit: int
) -> None:
    """One training user's history x K: what a ranking of that user sums."""
    if indptr.ndim != 1 or indptr.size < 2:
        return  # _build says what is wrong with it
    longest = int(np.max(np.diff(indptr)))
    k = neighbors_shape[1] if len(neighbors_shape) == 2 else 0
    work = longest * max(k, 1)
    if work > limit:
        raise ArtifactError(
            f"a user's history of {longest} items x {k} neighbours is {work} entries to rank, "
            f"above the {limit} limit (HELIUS_MAX_HISTORY_NEIGHBORS)"
        )


def _check_directory(archive: zipfile.ZipFile, cap: int) -> list[zipfile.ZipInfo]:
    """The members in the zip directory, by what it declares: names, sizes, ratios."""
    infos = archive.infolist()
    files = [info.filename for info in infos]
    if len(set(files)) != len(files):
        raise ArtifactError("artifact has duplicate members")
    if set(files) != _EXPECTED_FILES:
        missing = sorted(f.removesuffix(".npy") for f in _EXPECTED_FILES - set(files))
        extra = sorted(f.removesuffix(".npy") for f in set(files) - _EXPECTED_FILES)
        raise ArtifactError(f"artifact arrays differ: missing {missing}, unexpected {extra}")
    total = 0
    for info in infos:
        name = info.filename[:-4]
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArtifactError(f"{name}: compression method {info.compress_type} not accepted")
        if info.file_size > cap:
            raise ArtifactError(_over_cap(f"{name}: declares", info.file_size, cap))
        total += info.file_size
        if (
            info.file_size > _RATIO_CHECKED_ABOVE
            and info.file_size > MAX_COMPRESSION_RATIO * info.compress_size
        ):
            raise ArtifactError(
                f"{name}: {info.compress_size} bytes that inflate to {info.file_size} "
                f"compress better than {MAX_COMPRESSION_RATIO}:1, which no trained model does"
            )
    if total > cap:
        raise ArtifactError(_over_cap("arrays declare in total", total, cap))
    return infos


def _check_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> _Member:
    """Read one member's `.npy` header (a few hundred bytes inflated, never the payload)."""
    name = info.filename[:-4]
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ArtifactError(f"{name}: .npy format version {version} not accepted")
        header_size = member.tell()
    if dtype.hasobject or dtype.kind != _EXPECTED_KINDS[name]:
        raise ArtifactError(f"{name}: dtype {dtype} is not of kind {_EXPECTED_KINDS[name]!r}")
    exact = _EXACT_DTYPES.get(name)
    if (exact is not None and dtype != exact) or not dtype.isnative:
        wanted = exact.str if exact is not None else "native byte order"
        raise ArtifactError(f"{name}: dtype {dtype.str} is not {wanted} (it would be converted)")
    if any(dim < 0 for dim in shape):
        raise ArtifactError(f"{name}: negative dimension in shape {_short(shape)}")
    count = math.prod(shape)
    # a zero-width dtype (`<U0`) still counts a byte per element: its elements take no bytes
    # in the array but cost time and memory in the checks
    cost = count * max(dtype.itemsize, 1)
    if name in _ID_ARRAYS:
        cost += count * ID_LOOKUP_BYTES
    if cost > cap:
        raise ArtifactError(
            _over_cap(f"{name}: shape {_short(shape)} of {dtype} declares", cost, cap)
        )
    if header_size + count * dtype.itemsize != info.file_size:
        raise ArtifactError(
            f"{name}: the zip declares {info.file_size} bytes but the .npy header "
            f"{header_size + count * dtype.itemsize} (shape {_short(shape)}, dtype {dtype})"
        )
    return _Member(name, info, tuple(shape), cost)


def _read(archive: zipfile.ZipFile, member: _Member) -> npt.NDArray[np.generic]:
    with archive.open(member.info) as handle:
        array: npt.NDArray[np.generic] = np.lib.format.read_array(handle, allow_pickle=False)
    return array


def _over_cap(what: str, size: int, cap: int) -> str:
    return f"{what} {size} decompressed bytes, above the {cap}-byte limit"


def _short(shape: tuple[int, ...]) -> str:
    text = str(shape)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _build(arrays: dict[str, npt.NDArray[np.generic]]) -> RecoModel:
    for name, kind in _EXPECTED_KINDS.items():
        if arrays[name].dtype.kind != kind:
            raise ArtifactError(f"{name}: dtype {arrays[name].dtype} is not of kind {kind!r}")
    version = arrays["format_version"]
    if version.shape != () or int(version) != FORMAT_VERSION:
        raise ArtifactError(f"format_version {version!r} is not {FORMAT_VERSION}")
    item_ids = arrays["item_ids"]
    n_items = _check_1d(item_ids, "item_ids")
    if not 0 < n_items <= _MAX_ITEMS:
        raise ArtifactError(f"item_ids: {n_items} items, expected 1..{_MAX_ITEMS}")
    if np.unique(item_ids).size != n_items:
        raise ArtifactError("item_ids: duplicates")
    popularity = arrays["popularity"]
    if popularity.shape != (n_items,):
        raise ArtifactError(f"popularity: shape {popularity.shape}, expected ({n_items},)")
    _check_scores(popularity, "popularity")
    neighbors, neighbor_scores = arrays["neighbors"], arrays["neighbor_scores"]
    if neighbors.ndim != 2 or neighbors.shape[0] != n_items or neighbors.shape[1] > _MAX_NEIGHBORS:
        raise ArtifactError(f"neighbors: shape {neighbors.shape}, expected ({n_items}, K<=1000)")
    if neighbor_scores.shape != neighbors.shape:
        raise ArtifactError(f"neighbor_scores: shape {neighbor_scores.shape} != neighbors'")
    _check_indices(neighbors, n_items, "neighbors")
    _check_scores(neighbor_scores, "neighbor_scores")
    user_ids = arrays["user_ids"]
    n_users = _check_1d(user_ids, "user_ids")
    if np.unique(user_ids).size != n_users:
        raise ArtifactError("user_ids: duplicates")
    indptr, indices = arrays["history_indptr"], arrays["history_indices"]
    if indptr.shape != (n_users + 1,):
        raise ArtifactError(f"history_indptr: shape {indptr.shape}, expected ({n_users + 1},)")
    nnz = _check_1d(indices, "history_indices")
    if indptr[0] != 0 or indptr[-1] != nnz or bool(np.any(np.diff(indptr) < 0)):
        raise ArtifactError("history_indptr: not a CSR pointer (0 .. nnz, non-decreasing)")
    _check_indices(indices, n_items, "history_indices")
    return RecoModel(
        item_ids=item_ids.astype(np.str_, copy=False),
        popularity=popularity.astype(np.float32, copy=False),
        neighbors=neighbors.astype(np.int32, copy=False),
        neighbor_scores=neighbor_scores.astype(np.float32, copy=False),
        user_ids=user_ids.astype(np.str_, copy=False),
        history_indptr=indptr.astype(np.int64, copy=False),
        history_indices=indices.astype(np.int32, copy=False),
    )


def _check_1d(array: npt.NDArray[np.generic], name: str) -> int:
    if array.ndim != 1:
        raise ArtifactError(f"{name}: {array.ndim} dimensions, expected 1")
    return int(array.shape[0])


def _check_indices(array: npt.NDArray[np.generic], bound: int, name: str) -> None:
    if array.size and (int(array.min()) < 0 or int(array.max()) >= bound):
        raise ArtifactError(f"{name}: index out of range 0..{bound - 1}")


def _check_scores(array: npt.NDArray[np.generic], name: str) -> None:
    # no float64 copy: at the cap that copy alone doubled the peak of a decode
    if not bool(np.all(np.isfinite(array))) or bool(np.any(np.less(array, 0))):
        raise ArtifactError(f"{name}: values must be finite and >= 0")
