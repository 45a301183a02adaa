"""Hostile artifacts cost no memory: sizes are judged from the zip directory and the `.npy`
headers before any array is decompressed, and running out of memory is a rejection.

Memory is measured with tracemalloc, which sees numpy's array buffers and zlib's output as
well as Python objects: the peak above the start of the measured block.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
from helius_reco.core.config import Settings
from helius_reco.exceptions import ArtifactError
from helius_reco.lifecycle.cache import ModelCache
from helius_reco.lifecycle.store import ModelSource
from helius_reco.main import build_refresher
from helius_reco.model.artifact import ID_LOOKUP_BYTES, decode
from peak_memory import MiB, traced_peak


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _zeros(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = bytes(chunk)
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


def _zip(members: dict[str, Iterable[bytes]]) -> bytes:
    """A deflated npz written member by member, chunk by chunk (never whole in memory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, chunks in members.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                for chunk in chunks:
                    member.write(chunk)
    return buffer.getvalue()


def _artifact_with(model, **replaced: Iterable[bytes]) -> bytes:
    members: dict[str, Iterable[bytes]] = {
        name: [_npy(np.asarray(array))] for name, array in model.arrays().items()
    }
    return _zip(members | replaced)


@pytest.fixture(scope="session")
def bomb(model) -> bytes:
    """~260 KB (the trained model's arrays, ~200 KB of bomb) that inflates to 200 MB:
    `neighbor_scores` declared (500, 100000) float32, all zeros."""
    shape = (500, 100_000)
    header = _npy_header(np.dtype("<f4"), shape)
    return _artifact_with(model, neighbor_scores=[header, *_zeros(500 * 100_000 * 4)])


@pytest.fixture(scope="session")
def huge_shape(model) -> bytes:
    """A few KB whose `item_ids` header declares 2**40 strings (32 TiB): no payload at all."""
    return _artifact_with(model, item_ids=[_npy_header(np.dtype("<U8"), (2**40,))])


def test_the_bomb_is_what_the_issue_describes(bomb: bytes) -> None:
    sizes = [info.file_size for info in zipfile.ZipFile(io.BytesIO(bomb)).infolist()]
    assert len(bomb) < 300_000 and sum(sizes) > 200_000_000


def test_decompression_bomb_is_rejected_without_inflating_it(bomb: bytes) -> None:
    with traced_peak() as peak, pytest.raises(ArtifactError) as rejected:
        decode(bomb)
    assert peak.bytes < 2 * MiB, f"decode of a rejected bomb allocated {peak.bytes} bytes"
    assert "decompressed" in str(rejected.value)


def test_tiny_file_declaring_a_huge_shape_is_rejected(huge_shape: bytes) -> None:
    assert len(huge_shape) < 120_000
    with traced_peak() as peak, pytest.raises(ArtifactError, match="item_ids"):
        decode(huge_shape)
    assert peak.bytes < 2 * MiB


def test_each_array_is_held_to_the_cap(artifact: bytes) -> None:
    # history_indices is the largest array of the trained model (~109 KB)
    with pytest.raises(ArtifactError, match="history_indices.*100000-byte"):
        decode(artifact, max_decompressed_bytes=100_000)


def test_arrays_are_held_to_the_cap_together(artifact: bytes, model) -> None:
    members = zipfile.ZipFile(io.BytesIO(artifact)).infolist()
    largest, total = max(m.file_size for m in members), sum(m.file_size for m in members)
    cap = largest + 1000
    assert cap < total
    with pytest.raises(ArtifactError, match=f"in total.*{cap}-byte"):
        decode(artifact, max_decompressed_bytes=cap)
    ids = model.item_ids.size + model.user_ids.size
    assert decode(artifact, max_decompressed_bytes=total + ids * ID_LOOKUP_BYTES).fingerprint()


def test_zero_width_elements_still_count(model) -> None:
    # 2**40 empty strings take no bytes as an array, but a lookup table of them would
    hollow = _artifact_with(model, user_ids=[_npy_header(np.dtype("<U0"), (2**40,))])
    with traced_peak() as peak, pytest.raises(ArtifactError, match="user_ids: shape.*declares"):
        decode(hollow)
    assert peak.bytes < 2 * MiB


def test_ids_are_charged_what_they_cost_in_memory(artifact: bytes, model) -> None:
    # ids become Python strings in lookup tables: a cap that fits the arrays but not those
    arrays = sum(m.file_size for m in zipfile.ZipFile(io.BytesIO(artifact)).infolist())
    ids = model.item_ids.size + model.user_ids.size
    with pytest.raises(ArtifactError, match="user_ids: .* declares 552000 decompressed bytes"):
        decode(artifact, max_decompressed_bytes=arrays + 100_000)
    assert decode(artifact, max_decompressed_bytes=arrays + ids * ID_LOOKUP_BYTES).n_users


def test_negative_dimensions_are_rejected(model) -> None:
    negative = _artifact_with(model, user_ids=[_npy_header(np.dtype("<U8"), (-4, -4))])
    with pytest.raises(ArtifactError, match="user_ids: negative dimension"):
        decode(negative)


def test_zip_size_must_agree_with_the_npy_header(model) -> None:
    # popularity declares 500 floats but carries 10 times as many bytes
    header = _npy_header(np.dtype("<f4"), (500,))
    lying = _artifact_with(model, popularity=[header, np.ones(5000, "<f4").tobytes()])
    with pytest.raises(ArtifactError, match="popularity"):
        decode(lying)


def test_implausibly_compressible_arrays_are_rejected(model) -> None:
    # under the cap and otherwise valid (every neighbour is item 0 with score 0), but 2 MB of
    # zeros that deflate about 1000:1: no model we train looks like that
    n_items = model.item_ids.shape[0]
    zeros = {
        name: [_npy_header(np.dtype(dtype), (n_items, 1000)), *_zeros(n_items * 1000 * 4)]
        for name, dtype in (("neighbors", "<i4"), ("neighbor_scores", "<f4"))
    }
    with pytest.raises(ArtifactError, match="compress"):
        decode(_artifact_with(model, **zeros))


@pytest.mark.parametrize("member_name", ["../item_ids.npy", "item_ids.npy"])
def test_unexpected_or_duplicate_members_are_rejected(artifact: bytes, member_name: str) -> None:
    buffer = io.BytesIO(artifact)
    with zipfile.ZipFile(buffer, "a") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it writes
        archive.writestr(member_name, _npy(np.array([1])))
    with pytest.raises(ArtifactError):
        decode(buffer.getvalue())


def test_running_out_of_memory_while_loading_is_a_rejection(
    artifact: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(np.lib.format, "read_array", out_of_memory)
    with pytest.raises(ArtifactError, match="memory"):
        decode(artifact)


def test_refresher_files_a_huge_shape_as_artifact_rejected_and_keeps_serving(
    make_refresher, fake_registry, metrics, artifact: bytes, huge_shape: bytes
) -> None:
    fake_registry.publish("1", artifact)
    refresher = make_refresher()
    refresher.load_local()
    assert refresher.refresh_once().ok
    fake_registry.publish("2", huge_shape)
    outcome = refresher.refresh_once()
    assert (outcome.ok, outcome.reason, outcome.version) == (False, "artifact_rejected", "2")
    served = refresher.store.current
    assert served is not None and (served.version, served.source) == ("1", ModelSource.REGISTRY)
    assert metrics.registry.get_sample_value("reco_engine_artifact_rejected_total") == 1
    assert (
        metrics.registry.get_sample_value(
            "reco_engine_refresh_failures_total", {"reason": "unavailable"}
        )
        == 0
    )


def test_refresher_files_out_of_memory_as_artifact_rejected(
    make_refresher, fake_registry, artifact: bytes, other_artifact: bytes, monkeypatch
) -> None:
    fake_registry.publish("1", artifact)
    refresher = make_refresher()
    refresher.load_local()
    assert refresher.refresh_once().ok

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(np.lib.format, "read_array", out_of_memory)
    fake_registry.publish("2", other_artifact)
    outcome = refresher.refresh_once()
    assert (outcome.reason, refresher.store.current.version) == ("artifact_rejected", "1")


def test_hostile_cache_falls_back_to_the_baseline(
    tmp_path: Path, make_refresher, metrics, huge_shape: bytes
) -> None:
    ModelCache(tmp_path / "cache").save(huge_shape, "9")  # as if written by an older release
    served = make_refresher().load_local()
    assert served.source == ModelSource.BASELINE
    assert metrics.registry.get_sample_value("reco_engine_artifact_rejected_total") == 1


def test_oversized_cache_file_is_rejected_before_it_is_read(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path, max_bytes=MiB)
    cache.meta_path.write_text('{"version": "9", "sha256": "0"}')
    with cache.artifact_path.open("wb") as handle:
        handle.truncate(100 * MiB)  # sparse: no disk used
    with traced_peak() as peak, pytest.raises(ArtifactError, match="limit"):
        cache.load()
    assert peak.bytes < MiB


def test_the_setting_reaches_the_refresher_and_the_cache(
    tmp_path: Path, fake_registry, metrics, artifact: bytes
) -> None:
    settings = Settings(cache_dir=tmp_path / "cache", max_artifact_decompressed_bytes=100_000)
    refresher = build_refresher(settings, metrics, model_registry=fake_registry)
    assert refresher.cache is not None and refresher.cache.max_decompressed_bytes == 100_000
    fake_registry.publish("1", artifact)
    outcome = refresher.refresh_once()
    assert outcome.reason == "artifact_rejected" and "100000-byte" in outcome.detail
