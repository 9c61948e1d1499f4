"""The Docker files stay in step with the Makefile, the package and the app (no engine needed)."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from cnnlens.service import create_app

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")
SERVICE_PORT = "8000"
DATA_DIR = "/data"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def final_stage(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM"]
    return pairs[starts[-1] :]


def makefile_install() -> tuple[str, str]:
    """The Makefile's runtime install: (constraints file, what it installs)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"\$\(PIP\) install (?:-q )?-c (\S+) -e (\S+)\n", makefile)
    assert match, "the Makefile's `pip install -c CONSTRAINTS -e .` line was not found"
    return match.group(1), match.group(2)


def base_image(pairs: list[tuple[str, str]]) -> str:
    defaults = {
        key: value
        for keyword, args in pairs
        if keyword == "ARG" and "=" in args
        for key, _, value in [args.partition("=")]
    }
    image = final_stage(pairs)[0][1].split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_same_pinned_install_as_the_makefile(name: str) -> None:
    constraints, package = makefile_install()
    pairs = instructions(DOCKER / name)
    copies = [args.split() for keyword, args in pairs if keyword == "COPY"]
    assert any(constraints in sources for sources in copies), f"{name} must COPY {constraints}"
    installs = [
        shlex.split(args) for keyword, args in pairs if keyword == "RUN" and "pip install" in args
    ]
    assert installs, f"{name} installs nothing"
    for command in installs:  # every pip install is pinned by the same constraints
        words = command[command.index("install") :]
        assert words[words.index("-c") + 1] == constraints, f"{name}: unpinned {command}"
    package_installs = [c for c in installs if package in c[c.index("install") :]]
    assert package_installs, f"{name} must `pip install -c {constraints} {package}`"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_a_non_root_user_with_a_healthcheck(name: str) -> None:
    stage = final_stage(instructions(DOCKER / name))
    keywords = [keyword for keyword, _ in stage]
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users, f"{name} has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{name} runs as {user}"
    assert keywords.index("USER") < keywords.index("CMD")
    (healthcheck,) = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert f"http://127.0.0.1:{SERVICE_PORT}/healthz" in healthcheck
    (expose,) = [args for keyword, args in stage if keyword == "EXPOSE"]
    assert expose == SERVICE_PORT
    (cmd,) = [args for keyword, args in stage if keyword == "CMD"]
    words = yaml.safe_load(cmd)  # the exec form is a JSON (hence YAML) list
    assert words[:2] == ["cnnlens", "serve"]
    assert words[words.index("--host") + 1] == "0.0.0.0"
    assert words[words.index("--port") + 1] == SERVICE_PORT
    assert f"CNNLENS_DATA_DIR={DATA_DIR}" in " ".join(args for _, args in stage)


def test_the_healthcheck_route_and_console_script_exist() -> None:
    assert "/healthz" in create_app().openapi()["paths"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["cnnlens"] == "cnnlens.cli:main"


def test_base_images() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", project["project"]["requires-python"])
    assert minimum is not None
    cpu = base_image(instructions(DOCKER / "Dockerfile"))
    assert cpu == "python:3.11-slim"
    version = re.search(r"python:(\d+)\.(\d+)", cpu)
    assert version is not None
    assert tuple(map(int, version.groups())) >= tuple(map(int, minimum.groups()))
    assert base_image(instructions(DOCKER / "Dockerfile.cuda")).startswith("nvidia/cuda:")


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
        for pattern in patterns
        for prefix in prefixes
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copied_files_exist_and_are_in_the_build_context(name: str) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert _ignored(".venv", patterns) and _ignored(".git", patterns)
    for keyword, args in instructions(DOCKER / name):
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _destination = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"{name} copies {source}, which does not exist"
            assert not _ignored(source, patterns), f".dockerignore drops {source}"
    assert (ROOT / "cnnlens" / "service" / "web" / "index.html").is_file()
    assert not _ignored("cnnlens/service/web/index.html", patterns)


def test_compose_builds_both_images_with_a_data_volume() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"cnnlens", "cnnlens-cuda"}
    for name, service in services.items():
        build = service["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]).is_file()
        assert any(port.endswith(f":{SERVICE_PORT}") for port in service["ports"])
        volume, _, target = service["volumes"][0].partition(":")
        assert target == DATA_DIR and volume in compose["volumes"], name
        assert service["environment"]["CNNLENS_DATA_DIR"] == DATA_DIR
    assert services["cnnlens"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["cnnlens-cuda"]["profiles"] == ["gpu"]
    devices = services["cnnlens-cuda"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
