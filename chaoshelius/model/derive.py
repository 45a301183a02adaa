"""A different model artifact derived from another, with the standard library only.

The artifact is the service's `.npz` (helius_reco/model/artifact.py): a zip of eight `.npy`
arrays whose names, dtypes and shapes the service checks exactly. `derive` keeps all of that
and rewrites only the payload of `neighbor_scores.npy` (float32): every score times a factor
taken from the seed (1.01 .. 1.50). So the bytes, and the digest the service names the model
by, change, while the recommendations stay the same: a ranking sums a user's neighbour scores,
and scaling them all by one positive factor keeps their order (up to float32 rounding of
near-ties). Deterministic: the same artifact and seed give the same bytes.
"""

from __future__ import annotations

import ast
import hashlib
import io
import sys
import zipfile
from array import array

from chaoshelius.exceptions import TargetError

__all__ = ["DIGEST_CHARS", "SCORES_MEMBER", "derive", "digest", "scale_factor"]

DIGEST_CHARS = 12  # as the service names an artifact (helius_reco.model.recommender)
SCORES_MEMBER = "neighbor_scores.npy"
_NPY_MAGIC = b"\x93NUMPY"
_SCORES_DTYPE = "<f4"  # the exact dtype the service accepts for neighbor_scores


def digest(data: bytes) -> str:
    """The short sha256 of artifact bytes, as the service reports it in `model_digest`."""
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def scale_factor(seed: int) -> float:
    """The factor the scores are multiplied by: 1.01 .. 1.50, never 1."""
    return 1.0 + (seed % 50 + 1) / 100


def derive(artifact: bytes, seed: int) -> bytes:
    """`artifact` with its neighbour scores scaled by `scale_factor(seed)`, every other member
    as it was (same names, order and timestamps, deflated). Raises TargetError when the
    artifact is not the `.npz` the service loads."""
    factor = scale_factor(seed)
    out = io.BytesIO()
    try:
        with (
            zipfile.ZipFile(io.BytesIO(artifact)) as source,
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
        ):
            infos = source.infolist()
            if SCORES_MEMBER not in {info.filename for info in infos}:
                raise TargetError(f"the model artifact has no {SCORES_MEMBER}")
            for info in infos:
                body = source.read(info)
                if info.filename == SCORES_MEMBER:
                    body = _scaled(body, factor)
                member = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                member.compress_type = zipfile.ZIP_DEFLATED
                member.external_attr = info.external_attr
                target.writestr(member, body)
    except (zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise TargetError(f"the model artifact is not a readable .npz: {exc}") from exc
    return out.getvalue()


def _scaled(npy: bytes, factor: float) -> bytes:
    """A float32 `.npy` with every value times `factor`; its header unchanged."""
    if not npy.startswith(_NPY_MAGIC) or len(npy) < 10:
        raise TargetError(f"{SCORES_MEMBER} is not a .npy file")
    major = npy[6]
    if major == 1:
        start, length = 10, int.from_bytes(npy[8:10], "little")
    elif major in (2, 3):
        start, length = 12, int.from_bytes(npy[8:12], "little")
    else:
        raise TargetError(f"{SCORES_MEMBER}: .npy format version {major} not known")
    end = start + length
    header = ast.literal_eval(npy[start:end].decode("latin1"))
    if not isinstance(header, dict) or header.get("descr") != _SCORES_DTYPE:
        raise TargetError(f"{SCORES_MEMBER}: header {header!r}, expected dtype {_SCORES_DTYPE}")
    values = array("f")
    values.frombytes(npy[end:])
    if sys.byteorder != "little":
        values.byteswap()
    scaled = array("f", (value * factor for value in values))
    if sys.byteorder != "little":
        scaled.byteswap()
    return npy[:end] + scaled.tobytes()
