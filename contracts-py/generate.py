"""Generates the Python code of the contract from proto/ into contracts-py.

Run through `make contracts`. With --check it generates into a scratch folder
and fails if the committed code differs, which is how CI catches stale code.

Generated modules live under todo_contracts.<area>.v1 (and
todo_contracts.cloudevents.v1) instead of todo.<area>.v1 and io.cloudevents.v1:
protoc names Python modules after proto paths, and a top-level package called
"io" would shadow the standard library. The import lines protoc writes are
rewritten accordingly; the serialized descriptors keep the proto names.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE_DIR = ROOT / "contracts-py" / "src" / "todo_contracts"
# Proto files that come from the googleapis-common-protos wheel, not from us.
GOOGLEAPIS_PROTOS = ("google/api/annotations.proto", "google/api/http.proto", "google/api/field_behavior.proto")

# proto package prefix -> Python package the generated modules go to.
MODULE_PREFIXES = {"todo": "todo_contracts", "io.cloudevents": "todo_contracts.cloudevents"}
# Only import lines and dotted references to generated modules (names ending
# in _pb2 or _pb2_grpc) are rewritten, so comments and descriptor bytes that
# mention proto packages stay as they are.
_FROM_IMPORT = re.compile(r"^from (todo|io\.cloudevents)((?:\.\w+)*) import ", re.MULTILINE)
_MODULE_REF = re.compile(r"\b(todo|io\.cloudevents)((?:\.\w+)*?\.\w+_pb2(?:_grpc)?)\b")


def googleapis_dir() -> Path:
    """Returns the folder holding google/api/*.proto from the installed wheel."""
    import google.api  # from googleapis-common-protos

    return Path(next(iter(google.api.__path__))).parent.parent


def copy_proto_deps(target: Path) -> None:
    """Copies the googleapis protos the contract imports into target (for buf)."""
    source = googleapis_dir()
    for rel in GOOGLEAPIS_PROTOS:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target / rel)


def _python_path(proto_rel: Path) -> Path:
    """Maps a proto path (todo/task/v1/x.proto) to its generated folder."""
    parts = proto_rel.parent.parts
    if parts[:2] == ("io", "cloudevents"):
        return Path("cloudevents", *parts[2:])
    assert parts[0] == "todo", proto_rel
    return Path(*parts[1:])


def _rewrite(text: str) -> str:
    text = _FROM_IMPORT.sub(lambda m: f"from {MODULE_PREFIXES[m.group(1)]}{m.group(2)} import ", text)
    return _MODULE_REF.sub(lambda m: f"{MODULE_PREFIXES[m.group(1)]}{m.group(2)}", text)


def generate(out: Path) -> list[Path]:
    """Generates every module into out (a package root); returns the files written."""
    protos = sorted(p.relative_to(PROTO_DIR) for p in PROTO_DIR.rglob("*.proto"))
    if not protos:
        sys.exit("no .proto files under proto/")
    import grpc_tools

    scratch = Path(tempfile.mkdtemp(prefix="todo-gen-"))
    try:
        well_known = Path(next(iter(grpc_tools.__path__))) / "_proto"
        bin_dir = Path(sys.executable).parent
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{PROTO_DIR}", f"-I{googleapis_dir()}", f"-I{well_known}",
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--python_out={scratch}", f"--grpc_python_out={scratch}",
            f"--mypy_out={scratch}", f"--mypy_grpc_out={scratch}",
            *[str(p) for p in protos],
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"protoc failed:\n{result.stderr}")
        written: list[Path] = []
        for proto in protos:
            src_dir = scratch / proto.parent
            dst_dir = out / _python_path(proto)
            dst_dir.mkdir(parents=True, exist_ok=True)
            stem = proto.stem
            for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
                src = src_dir / f"{stem}{suffix}"
                dst = dst_dir / f"{stem}{suffix}"
                dst.write_text(_rewrite(src.read_text()))
                written.append(dst)
        # Every folder between the package root and the modules is a package.
        for path in list(written):
            folder = path.parent
            while folder != out:
                init = folder / "__init__.py"
                if not init.exists():
                    init.write_text("")
                if init not in written:
                    written.append(init)
                folder = folder.parent
        return written
    finally:
        shutil.rmtree(scratch)


def generated_roots() -> set[str]:
    """Top-level folders of todo_contracts that hold only generated code."""
    return {_python_path(p.relative_to(PROTO_DIR)).parts[0] for p in PROTO_DIR.rglob("*.proto")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=["code", "check", "deps"],
        help="code: regenerate into contracts-py; check: fail if the committed code is stale; "
        "deps: copy the google/api protos the contract imports to --deps-dir (for buf)",
    )
    parser.add_argument("--deps-dir", type=Path, default=ROOT / "build" / "proto-deps")
    args = parser.parse_args()
    if args.command == "deps":
        copy_proto_deps(args.deps_dir)
        return 0
    if args.command == "check":
        return check()
    for top in generated_roots():
        shutil.rmtree(PACKAGE_DIR / top, ignore_errors=True)
    files = generate(PACKAGE_DIR)
    print(f"generated {len(files)} files under {PACKAGE_DIR.relative_to(ROOT)}")
    return 0


def check() -> int:
    """Generates into a scratch folder and compares with the committed code."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        stale: list[str] = []
        for top in sorted(generated_roots()):
            cmp = filecmp.dircmp(fresh_root / top, PACKAGE_DIR / top, ignore=["__pycache__"])
            stale.extend(_differences(cmp, Path(top)))
    if stale:
        print("generated code is stale; run `make contracts` and commit the result:", file=sys.stderr)
        for line in stale:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"generated code is fresh ({len(generated_roots())} packages)")
    return 0


def _differences(cmp: filecmp.dircmp[str], rel: Path) -> list[str]:
    out = [f"missing: {rel / n}" for n in cmp.left_only]
    out += [f"not generated from proto/: {rel / n}" for n in cmp.right_only]
    # dircmp compares by stat signature first; compare contents to be sure.
    for name in cmp.common_files:
        if not filecmp.cmp(Path(cmp.left) / name, Path(cmp.right) / name, shallow=False):
            out.append(f"differs: {rel / name}")
    for name, sub in cmp.subdirs.items():
        out.extend(_differences(sub, rel / name))
    return out


if __name__ == "__main__":
    sys.exit(main())
