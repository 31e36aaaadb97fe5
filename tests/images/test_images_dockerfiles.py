"""The Dockerfiles' policy, read from the files: pinned bases, the recipe in the builder, a small non-root final stage.

hadolint (`make lint-images`) checks the general rules; these are the project's own: every base pinned to an exact
version (or by digest where none is published), no build tool or installer in the final stage, a numeric non-root
USER, a HEALTHCHECK, the interface's entrypoint, port and labels. Each rule is also shown failing on a bad file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from image_recipe import ROOT, SERVICES

DIGEST_PINNED_BASES = {"gcr.io/distroless/static-debian13:nonroot"}
"""Bases that publish no version tags; `make images` pins them by digest (deploy/images/bases.lock)."""
EXACT_VERSION = re.compile(r":[^:@/]*\d+\.\d+\.\d+[^:@/]*$")
BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|yum|dnf|pip3?|uv|gcc|g\+\+|cc|make|go|npm|node|build-essential)\b(?! uninstall)"
)
LABELS = ("org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.source")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args_of(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages (base resolved through the ARGs) of a Dockerfile."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            stages.append(Stage(base, name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip().strip('"')
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


def violations(text: str, *, app_id: str | None) -> list[str]:
    """What a Dockerfile breaks of the policy (app_id None: the gateway's rules)."""
    found: list[str] = []
    _, stages = parse(text)
    if len(stages) < 2:
        return ["not multi-stage: the final stage must only receive what a builder stage made"]
    names = {s.name for s in stages[:-1]}
    for stage in stages:
        if stage.base.endswith(":latest") or (
            "@sha256:" not in stage.base and ":" not in stage.base.rsplit("/", 1)[-1]
        ):
            found.append(f"{stage.base or '(empty)'}: base not pinned (no tag or :latest)")
        elif not (EXACT_VERSION.search(stage.base) or "@sha256:" in stage.base or stage.base in DIGEST_PINNED_BASES):
            found.append(f"{stage.base}: base not pinned to an exact version")
    final = stages[-1]
    users = final.args_of("USER")
    if not users:
        found.append("final stage has no USER")
    elif not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]):
        found.append(f"final USER {users[-1]!r} is not a numeric non-root uid")
    if not final.args_of("HEALTHCHECK") or not final.args_of("HEALTHCHECK")[-1].split("CMD", 1)[-1].strip():
        found.append("final stage has no HEALTHCHECK")
    for run in final.args_of("RUN"):
        tool = BUILD_TOOLS.search(run)
        if tool and "pip uninstall" not in run:
            found.append(f"final stage runs a build tool or installer: {tool.group(0)}")
    for copy in final.args_of("COPY") + final.args_of("ADD"):
        source = re.search(r"--from=(\S+)", copy)
        if source is None or source.group(1) not in names:
            found.append(f"final stage copies something not made by a builder stage: {copy}")
    labels = " ".join(final.args_of("LABEL"))
    found += [f"final stage lacks the label {label}" for label in LABELS if label not in labels]
    entrypoint = final.args_of("ENTRYPOINT")
    builders = " ".join(run for stage in stages[:-1] for run in stage.args_of("RUN"))
    if app_id is not None:
        if "deploy/images/recipe.sh venv /opt/venv" not in builders:
            found.append("builder does not run the recipe (deploy/images/recipe.sh venv /opt/venv)")
        if stages[0].base != final.base:
            found.append("builder and final stage differ in base (the virtualenv's interpreter path must match)")
        if entrypoint != ['["todo-serve"]'] or final.args_of("CMD") != [f'["{app_id}"]']:
            found.append(f'entrypoint must be ["todo-serve"] with CMD ["{app_id}"]')
        env = " ".join(final.args_of("ENV"))
        if "TODO_GRPC_HOST=0.0.0.0" not in env or "TODO_GRPC_PORT=50051" not in env:
            found.append("final stage must set TODO_GRPC_HOST=0.0.0.0 and TODO_GRPC_PORT=50051")
        if final.args_of("WORKDIR") != ["/app"] or "50051" not in " ".join(final.args_of("EXPOSE")):
            found.append("final stage must have WORKDIR /app and EXPOSE 50051")
        if not any(kw == "COPY" and "/opt/venv" in a for kw, a in final.instructions):
            found.append("final stage does not receive /opt/venv")
    else:
        if "deploy/images/build-gateway.sh" not in builders:
            found.append("builder does not run deploy/images/build-gateway.sh")
        if entrypoint != ['["/usr/local/bin/todo-gateway"]']:
            found.append('entrypoint must be ["/usr/local/bin/todo-gateway"]')
    for kw, args in final.instructions:
        if kw in ("ENTRYPOINT", "CMD", "HEALTHCHECK") and not args.split("CMD", 1)[-1].strip().startswith("["):
            found.append(f"{kw} must be in exec form (no shell in the image to run it)")
    return found


DOCKERFILES = [(f"{s}/Dockerfile", s) for s in SERVICES] + [("gateway/Dockerfile", None)]


@pytest.mark.parametrize(("path", "app_id"), DOCKERFILES, ids=[p for p, _ in DOCKERFILES])
def test_every_dockerfile_keeps_the_image_policy(path: str, app_id: str | None) -> None:
    assert violations((ROOT / path).read_text(), app_id=app_id) == []


def test_every_service_folder_has_a_dockerfile() -> None:
    folders = {p.parent.name for p in ROOT.glob("*_svc/pyproject.toml")}
    assert folders == set(SERVICES)
    assert all((ROOT / f / "Dockerfile").is_file() for f in folders)


GOOD = (ROOT / "task_svc" / "Dockerfile").read_text()


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda t: t.replace("python:3.11.14-slim-trixie", "python:latest"), "not pinned (no tag or :latest)"),
        (lambda t: t.replace("python:3.11.14-slim-trixie", "python"), "not pinned (no tag or :latest)"),
        (lambda t: t.replace("python:3.11.14-slim-trixie", "python:3.11-slim"), "not pinned to an exact version"),
        (lambda t: t.replace("USER 10001:10001", "USER root"), "is not a numeric non-root uid"),
        (lambda t: t.replace("USER 10001:10001", "USER 0"), "is not a numeric non-root uid"),
        (lambda t: t.replace("USER 10001:10001\n", ""), "final stage has no USER"),
        (lambda t: re.sub(r"HEALTHCHECK .*\n.*\n", "", t), "final stage has no HEALTHCHECK"),
        (
            lambda t: t.replace("WORKDIR /app\n", "WORKDIR /app\nRUN apt-get update && apt-get install -y gcc\n"),
            "runs a build tool or installer",
        ),
        (lambda t: t.replace("COPY --from=builder /opt/venv", "COPY task_svc"), "not made by a builder stage"),
        (lambda t: t.replace('CMD ["task_svc"]', 'CMD ["chat_svc"]'), "CMD"),
        (lambda t: t.replace('ENTRYPOINT ["todo-serve"]', "ENTRYPOINT todo-serve"), "exec form"),
        (lambda t: t.replace("org.opencontainers.image.revision", "revision"), "image.revision"),
        (lambda t: t.replace("recipe.sh venv /opt/venv", "recipe.sh venv /venv"), "run the recipe"),
    ],
)
def test_the_policy_finds_a_broken_dockerfile(change: object, complaint: str) -> None:
    assert callable(change)
    broken = change(GOOD)
    assert broken != GOOD
    assert any(complaint in v for v in violations(broken, app_id="task_svc")), violations(broken, app_id="task_svc")


def test_the_gateway_policy_refuses_a_shell_based_final_stage() -> None:
    text = (ROOT / "gateway" / "Dockerfile").read_text()
    broken = text.replace(
        "ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian13:nonroot", "ARG RUNTIME_IMAGE=debian:trixie-slim"
    )
    assert any("exact version" in v for v in violations(broken, app_id=None))


def test_the_parser_reads_args_stages_and_continued_lines() -> None:
    args, stages = parse(GOOD)
    assert args == {"PYTHON_IMAGE": "python:3.11.14-slim-trixie"}
    assert [s.name for s in stages] == ["builder", ""]
    assert stages[1].args_of("CMD") == ['["task_svc"]']
    assert "recipe.sh venv /opt/venv /wheels task_svc" in stages[0].args_of("RUN")[0]
