"""`chaoshelius images build` with stand-in engines: no container engine runs here (docker is
installed as a client only, its daemon absent), so `docker`, `podman` and `kind` are small
shell scripts on PATH that record their argv and working directory. The tests check the exact
commands and build contexts, and the one-line errors when an engine is missing or silent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from chaoshelius.cli import main
from chaoshelius.images import IMAGES

ROOT = Path(__file__).resolve().parents[2]
SH = shutil.which("sh") or "/bin/sh"

RECORDER = """#!{sh}
# {name}: record argv (unit-separated) and the working directory, then behave
log="{log}"
printf '%s' "{name}" >> "$log"
for a in "$@"; do printf '\\037%s' "$a" >> "$log"; done
printf '\\036%s\\n' "$(pwd)" >> "$log"
{body}
"""


def _tool(bin_dir: Path, log: Path, name: str, body: str = "exit 0") -> None:
    path = bin_dir / name
    path.write_text(RECORDER.format(sh=SH, name=name, log=log, body=body))
    path.chmod(0o755)


def _calls(log: Path) -> list[tuple[list[str], str]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().split("\n")[:-1]:  # not splitlines: it splits at \x1e too
        argv, cwd = line.split("\x1e")
        out.append((argv.split("\x1f"), cwd))
    return out


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the stand-ins each test writes (no real docker, podman, kind)."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def _build(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["images", "build", "--source", str(ROOT), *args])
    return result.exit_code, result.output


def _expected_builds(engine: str, registry: str, tag: str) -> list[tuple[list[str], str]]:
    return [
        (
            [engine, "build", "-f", str(ROOT / i.dockerfile), "-t",
             f"{registry}/{i.name}:{tag}", str(ROOT / i.context)],
            str(ROOT),
        )
        for i in IMAGES
    ]  # fmt: skip


DIGEST = "sha256:" + "ab" * 32
# `docker image inspect --format {{json .RepoDigests}} REF`: a digest for every pushed image but
# the harness (an engine that reports none), listed after another repository's
REPO_DIGESTS = f"""
if [ "$1" = image ] && [ "$2" = inspect ]; then
  for last; do :; done
  case "$last" in
    *helius-harness*) echo '[]' ;;
    *) echo "[\\"other.example/x@sha256:00\\", \\"${{last%:*}}@{DIGEST}\\"]" ;;
  esac
fi
"""


def test_docker_builds_the_three_images_with_their_contexts_then_pushes(
    bin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls"
    _tool(bin_dir, log, "docker", REPO_DIGESTS)
    code, output = _build("--registry", "reg.example/team", "--tag", "v7", "--push")
    assert code == 0, output
    refs = [f"reg.example/team/{i.name}:v7" for i in IMAGES]
    pushes = [(["docker", "push", ref], str(ROOT)) for ref in refs]
    inspects = [
        (["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref], str(ROOT))
        for ref in refs
    ]
    calls = [([Path(argv[0]).name, *argv[1:]], cwd) for argv, cwd in _calls(log)]
    assert (
        calls
        == [(["docker", "info"], calls[0][1])]
        + _expected_builds("docker", "reg.example/team", "v7")
        + pushes
        + inspects
    )
    # the contexts the Dockerfiles assume: service/ alone, the mlflow directory, the root
    assert [c[0][-1] for c in calls[1:4]] == [
        str(ROOT / "service"),
        str(ROOT / "manifests" / "images" / "mlflow"),
        str(ROOT),
    ]
    # what the overlay needs, ready to paste: pushed images pinned by their registry digest
    assert "images:\n  - name: ghcr.io/helius/helius-reco-service\n" in output
    assert (
        f"    newName: reg.example/team/mlflow-server\n    digest: {DIGEST}  # pushed as tag v7"
        in output
    )
    assert "    newName: reg.example/team/helius-harness\n    newTag: v7" in output
    assert "# reg.example/team/helius-harness:v7: the engine reports no registry digest" in output
    assert f" ghcr.io/helius/mlflow-server=reg.example/team/mlflow-server@{DIGEST}" in output
    assert " ghcr.io/helius/helius-harness=reg.example/team/helius-harness:v7" in output
    assert "kustomize edit set image ghcr.io/helius/helius-reco-service=" in output
    block = output[output.index("\nimages:\n") : output.index("# or, equivalently")]
    entries = {e["name"]: e for e in yaml.safe_load(block)["images"]}
    assert entries["ghcr.io/helius/helius-reco-service"]["digest"] == DIGEST
    assert entries["ghcr.io/helius/helius-harness"]["newTag"] == "v7"


def test_default_tags_are_the_manifests_and_kind_loads_from_docker(
    bin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls"
    _tool(bin_dir, log, "docker")
    _tool(bin_dir, log, "kind")
    code, output = _build("--load-kind", "helius", "--only", "service", "--only", "harness")
    assert code == 0, output
    calls = [[Path(argv[0]).name, *argv[1:]] for argv, _ in _calls(log)]
    refs = ["ghcr.io/helius/helius-reco-service:0.1.0", "ghcr.io/helius/helius-harness:0.1.0"]
    assert [c[:2] for c in calls] == [["docker", "info"], ["docker", "build"], ["docker", "build"],
                                      ["kind", "load"]]  # fmt: skip
    assert [c[5] for c in calls[1:3]] == refs
    assert calls[3] == ["kind", "load", "docker-image", "--name", "helius", *refs]


def test_podman_loads_into_kind_through_an_archive(bin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "calls"
    _tool(bin_dir, log, "podman")
    _tool(bin_dir, log, "kind")
    code, output = _build("--engine", "podman", "--only", "mlflow", "--only", "harness",
                          "--load-kind", "k")  # fmt: skip
    assert code == 0, output
    calls = [[Path(argv[0]).name, *argv[1:]] for argv, _ in _calls(log)]
    refs = ["ghcr.io/helius/mlflow-server:3.17.2", "ghcr.io/helius/helius-harness:0.1.0"]
    assert [c[:2] for c in calls[1:3]] == [["podman", "build"]] * 2
    assert [c[5] for c in calls[1:3]] == refs
    # several images in one archive: without --multi-image-archive podman reads the other
    # names as tags of the first image
    save = calls[3]
    assert save[:6] == ["podman", "save", "--format", "docker-archive", "--multi-image-archive",
                        "-o"] and save[7:] == refs  # fmt: skip
    assert calls[4] == ["kind", "load", "image-archive", "--name", "k", save[6]]


def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    return errors[0]


def test_no_engine_at_all_exits_2_saying_what_is_missing(bin_dir: Path) -> None:
    code, output = _build()
    assert code == 2, output
    line = _one_error_line(output)
    assert "docker: not on PATH" in line and "podman: not on PATH" in line


def test_a_docker_client_without_a_daemon_is_not_an_engine(bin_dir: Path, tmp_path: Path) -> None:
    """What this machine has: the docker CLI, no daemon (`docker info` fails)."""
    log = tmp_path / "calls"
    daemon_down = (
        'if [ "$1" = info ]; then echo "Cannot connect to the Docker daemon at '
        'unix:///var/run/docker.sock. Is the docker daemon running?" >&2; exit 1; fi'
    )
    _tool(bin_dir, log, "docker", daemon_down)
    code, output = _build()
    assert code == 2, output
    line = _one_error_line(output)
    assert "docker: the client is installed but its engine does not answer" in line
    assert "Cannot connect to the Docker daemon" in line
    assert [Path(argv[0]).name for argv, _ in _calls(log)] == ["docker"]  # info only, no build
    assert [argv[1] for argv, _ in _calls(log)] == ["info"]


def test_push_needs_the_users_registry_and_a_failed_build_stops(
    bin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls"
    _tool(bin_dir, log, "docker", 'if [ "$1" = build ]; then exit 3; fi')
    code, output = _build("--push")
    assert code == 2 and "--push needs --registry" in _one_error_line(output)
    assert not _calls(log)
    code, output = _build("--registry", "r.example")
    assert code == 1, output
    assert "`docker build` failed with exit code 3" in _one_error_line(output)
    assert [argv[1] for argv, _ in _calls(log)] == ["info", "build"]  # stopped at the first


def test_kind_is_required_for_load_kind(bin_dir: Path, tmp_path: Path) -> None:
    _tool(bin_dir, tmp_path / "calls", "docker")
    code, output = _build("--load-kind", "helius")
    assert code == 2 and "--load-kind needs `kind` on PATH" in _one_error_line(output)
    assert [argv[1] for argv, _ in _calls(tmp_path / "calls")] == ["info"]


def test_print_only_needs_no_engine(bin_dir: Path) -> None:
    code, output = _build("--print-only", "--registry", "r.example/x", "--tag", "2.0")
    assert code == 0, output
    assert output.count("+ docker build") == 3
    assert "newTag: '2.0'" in output  # quoted: YAML would read 2.0 as a number
