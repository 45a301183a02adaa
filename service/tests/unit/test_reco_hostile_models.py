"""Hostile models (issue 17, findings 1 and 3): what an artifact can make the service spend.

- dtypes are exact: an array the model would widen (int8 neighbours, float16 scores, ...) is
  refused, so that the cap on declared bytes is the model's size in memory;
- one training user's history x K (the neighbour entries one ranking sums) is bounded by
  `HELIUS_MAX_HISTORY_NEIGHBORS`, judged before any large array is read;
- a ranking that does real work runs off the event loop and in bounded chunks, so that the
  probes keep answering and one request's memory stays small;
- a zip's end-of-central-directory record is checked before `zipfile` parses the directory:
  a 700k-member zip is refused in milliseconds.

Memory is measured with tracemalloc (numpy buffers included), time with the monotonic clock.
"""

from __future__ import annotations

import asyncio
import io
import struct
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from helius_reco.core.config import Settings
from helius_reco.exceptions import ArtifactError
from helius_reco.main import create_app
from helius_reco.model.artifact import decode
from peak_memory import MiB, traced_peak


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _heavy_arrays(history: int, n_items: int = 1000, k: int = 1000) -> dict[str, np.ndarray]:
    """A model whose one training user `u0` has `history` items, each with `k` neighbours:
    ranking that user sums history x k entries. Random, so it deflates like a real model."""
    rng = np.random.default_rng(17)
    return {
        "format_version": np.array(1, dtype=np.int64),
        "item_ids": np.array([f"i{i:05d}" for i in range(n_items)]),
        "popularity": rng.random(n_items, dtype=np.float32),
        "neighbors": rng.integers(0, n_items, (n_items, k), dtype=np.int32),
        "neighbor_scores": rng.random((n_items, k), dtype=np.float32),
        "user_ids": np.array(["u0"]),
        "history_indptr": np.array([0, history], dtype=np.int64),
        # from the first half of the catalogue only: the other half is left to recommend
        "history_indices": rng.integers(0, n_items // 2, history, dtype=np.int32),
    }


# -- exact dtypes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("neighbors", "<i2"),  # widened 2x to int32
        ("neighbors", "<i8"),  # narrowed: a second copy while building
        ("neighbor_scores", "<f2"),  # widened 2x to float32
        ("popularity", "<f8"),
        ("history_indices", "<i2"),
        ("history_indptr", "<i4"),  # widened 2x to int64
        ("neighbor_scores", ">f4"),  # byte-swapped copy
    ],
)
def test_arrays_the_model_would_convert_are_refused(model, name: str, dtype: str) -> None:
    arrays = dict(model.arrays())
    arrays[name] = arrays[name].astype(dtype)
    with pytest.raises(ArtifactError, match=f"{name}: dtype"):
        decode(_npz(arrays))


def test_the_trained_model_and_the_baseline_have_the_exact_dtypes(artifact: bytes) -> None:
    from helius_reco.model.training import load_baseline

    assert decode(artifact).n_users == 2000
    assert load_baseline().n_users == 0


# -- history x K ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def heavy_user_artifact() -> bytes:
    """The issue's model: one user with 30,000 items x 1000 neighbours (3e7 entries; before
    the fix its first /predict took the process past 500 MiB), in a ~3 MB file."""
    return _npz(_heavy_arrays(history=30_000))


def test_a_user_whose_history_x_k_is_too_large_is_refused_cheaply(
    heavy_user_artifact: bytes,
) -> None:
    assert len(heavy_user_artifact) < 8 * MiB
    started = time.monotonic()
    with pytest.raises(ArtifactError, match="HELIUS_MAX_HISTORY_NEIGHBORS"):
        decode(heavy_user_artifact)
    elapsed = time.monotonic() - started
    with traced_peak() as peak, pytest.raises(ArtifactError):
        decode(heavy_user_artifact)
    print(f"refused in {elapsed * 1000:.1f} ms, peak {peak.bytes / MiB:.2f} MiB")
    assert elapsed < 0.1, f"refusing took {elapsed:.3f} s"
    assert peak.bytes < 2 * MiB, f"refusing allocated {peak.bytes} bytes"


def _app_with(tmp_path: Path, fake_registry, data: bytes, **settings):
    fake_registry.publish("7", data)
    return create_app(
        Settings(cache_dir=tmp_path / "cache", **settings), model_registry=fake_registry
    )


def _expected(arrays: dict[str, np.ndarray], k: int) -> list[str]:
    """The reference ranking of `u0`, computed in one piece."""
    seen = arrays["history_indices"]
    scores = np.bincount(
        arrays["neighbors"][seen].ravel(),
        weights=arrays["neighbor_scores"][seen].ravel(),
        minlength=arrays["item_ids"].size,
    )
    scores /= scores.max()
    pop = arrays["popularity"].astype(np.float64)
    scores += 0.1 * pop / pop.max()
    scores[seen] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [str(arrays["item_ids"][i]) for i in order]


def test_a_heavy_ranking_allowed_by_the_setting_holds_little_memory(
    tmp_path: Path, fake_registry
) -> None:
    arrays = _heavy_arrays(history=5_000)  # 5e6 entries: ~80 MB of temporaries in one go
    app = _app_with(tmp_path, fake_registry, _npz(arrays), max_history_neighbors=5 * 10**6)
    with TestClient(app) as client:
        assert client.get("/health").json()["model_version"] == "7"
        with traced_peak() as peak:
            response = client.post("/predict", json={"user_id": "u0", "k": 10})
    print(f"heavy ranking: peak {peak.bytes / MiB:.1f} MiB")
    assert response.status_code == 200
    assert [item["item_id"] for item in response.json()["items"]] == _expected(arrays, 10)
    assert peak.bytes < 16 * MiB, f"one ranking allocated {peak.bytes / MiB:.0f} MiB"


def test_probes_answer_while_a_heavy_user_is_ranked(tmp_path: Path, fake_registry) -> None:
    app = _app_with(
        tmp_path,
        fake_registry,
        _npz(_heavy_arrays(history=60_000)),  # 6e7 entries
        max_history_neighbors=10**8,
    )
    components = app.state.components
    components.refresher.load_local()
    assert components.refresher.refresh_once().ok

    async def scenario() -> tuple[float, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def timed(call) -> float:
                started = time.monotonic()
                response = await call
                assert response.status_code == 200
                return time.monotonic() - started

            due = time.monotonic() + 0.02  # before either request has started

            async def probe() -> float:
                await asyncio.sleep(0.02)  # the ranking has started
                response = await client.get("/health")
                assert response.status_code == 200
                return time.monotonic() - due  # a blocked loop delays the sleep's end too

            ranking, health = await asyncio.gather(
                timed(client.post("/predict", json={"user_id": "u0"})), probe()
            )
            return ranking, health

    ranking, health = asyncio.run(scenario())
    print(f"ranking {ranking * 1000:.0f} ms, /health meanwhile {health * 1000:.0f} ms")
    assert ranking > 0.1, "the ranking was too quick to show anything"
    assert health < ranking / 3, f"/health took {health:.3f} s while a ranking ran"


def test_concurrent_heavy_rankings_are_bounded(tmp_path: Path, fake_registry) -> None:
    """Sixteen users of 5,000 items x 1,000 neighbours each, asked at once: at most
    `MAX_CONCURRENT_RANKINGS` rank at a time, so memory is about that many rankings' steps
    (measured: 3.5 MiB with 2; 18.4 MiB with the bound lifted), and the others wait on the
    loop without holding a thread of the pool."""
    arrays = _heavy_arrays(history=5_000)
    users = 16
    arrays["user_ids"] = np.array([f"u{i}" for i in range(users)])
    arrays["history_indptr"] = np.arange(users + 1, dtype=np.int64) * 5_000
    arrays["history_indices"] = np.tile(arrays["history_indices"], users)
    app = _app_with(tmp_path, fake_registry, _npz(arrays), max_history_neighbors=10**7)
    components = app.state.components
    components.refresher.load_local()
    assert components.refresher.refresh_once().ok

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            calls = [client.post("/predict", json={"user_id": f"u{i}"}) for i in range(users)]
            answers = await asyncio.gather(*calls)
            assert all(answer.status_code == 200 for answer in answers)
            assert len({tuple(i["item_id"] for i in a.json()["items"]) for a in answers}) == 1

    with traced_peak() as peak:
        asyncio.run(scenario())
    print(f"{users} rankings at once: peak {peak.bytes / MiB:.1f} MiB")
    assert peak.bytes < 6 * MiB, f"{users} concurrent rankings allocated {peak.bytes / MiB:.0f} MiB"


# -- the zip's central directory ------------------------------------------------------------


def _many_member_zip(count: int, declared: int | None = None) -> bytes:
    """A zip of `count` empty stored members; its end record declares `declared` (default
    `count`) members (zip64 when that does not fit 16 bits)."""
    local: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for i in range(count):
        name = b"m%07d.npy" % i
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0)
        local.append(header + name)
        central.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
        offset += len(header) + len(name)
    directory = b"".join(central)
    declared = count if declared is None else declared
    tail = b""
    entries16 = declared
    if declared > 0xFFFF:
        zip64_at = offset + len(directory)
        tail = struct.pack(
            "<4sQ2H2L4Q",
            b"PK\x06\x06",
            44,
            45,
            45,
            0,
            0,
            declared,
            declared,
            len(directory),
            offset,
        ) + struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1)
        entries16 = 0xFFFF
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, entries16, entries16, len(directory), offset, 0
    )
    return b"".join(local) + directory + tail + end


@pytest.fixture(scope="session")
def zip_of_700k() -> bytes:
    return _many_member_zip(700_000)


@pytest.fixture(scope="session")
def zip_of_700k_declaring_8(zip_of_700k: bytes) -> bytes:
    return _many_member_zip(700_000, declared=8)


@pytest.mark.parametrize("fixture", ["zip_of_700k", "zip_of_700k_declaring_8"])
def test_a_zip_of_700k_members_is_refused_in_milliseconds(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    data: bytes = request.getfixturevalue(fixture)
    assert len(data) > 40 * MiB
    started = time.monotonic()
    with pytest.raises(ArtifactError) as refused:
        decode(data, max_bytes=128 * MiB)
    elapsed = time.monotonic() - started
    with traced_peak() as peak, pytest.raises(ArtifactError):
        decode(data, max_bytes=128 * MiB)
    message = str(refused.value)
    print(f"{fixture}: refused in {elapsed * 1000:.1f} ms, peak {peak.bytes / MiB:.2f} MiB")
    print(f"  {len(message)}-character message: {message[:150]}")
    assert elapsed < 0.05, f"refusing took {elapsed:.2f} s"
    assert peak.bytes < 2 * MiB, f"refusing allocated {peak.bytes / MiB:.0f} MiB"
    assert "zip directory" in message and len(message) < 300


def test_a_normal_zip64_end_record_is_still_read(model) -> None:
    """numpy may write zip64 records; a valid model behind a zip64 end record loads."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in model.arrays().items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
    assert decode(buffer.getvalue()).n_users == model.n_users


def test_a_zip64_end_record_with_placeholders_is_read(artifact: bytes, model) -> None:
    """Some writers always add a zip64 end record, with 0xFFFF placeholders in the classic
    one: the eight members behind it are counted from the zip64 record."""
    end = artifact.rfind(b"PK\x05\x06")
    _, _, _, on_disk, entries, size, offset, _ = struct.unpack_from("<4s4H2LH", artifact, end)
    assert entries == 8
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 8, 8, size, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    classic = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0
    )
    rewritten = artifact[:end] + record + locator + classic
    assert decode(rewritten).fingerprint() == model.fingerprint()
