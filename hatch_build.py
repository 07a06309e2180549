"""Hatchling build hook: compile protos/**/*.proto with grpcio-tools at build time.

The generated modules are written beside the sources (src/<package path of the .proto>), so
an editable install imports them from the checkout; a regular wheel force-includes them.
They are never committed (.gitignore).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ProtoBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "protos"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name not in ("wheel",):
            return
        root = Path(self.root)
        protos = root / "protos"
        out = root / "src"
        generated = compile_protos(protos, out)
        if version != "editable":
            for path in generated:
                build_data["force_include"][str(path)] = str(path.relative_to(out))


def compile_protos(protos: Path, out: Path) -> list[Path]:
    """Run protoc (python, grpc and type stubs); return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(protos.rglob("*.proto"))
    if not sources:
        return []
    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "grpc_tools.protoc",
        f"-I{protos}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(s) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {', '.join(str(s) for s in sources)}")
    written: list[Path] = []
    for source in sources:
        stem = out / source.relative_to(protos).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            path = stem.parent / (stem.name + suffix)
            if path.is_file():
                written.append(path)
    return written
