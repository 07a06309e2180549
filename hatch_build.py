"""Hatchling build hook: compile protos/**/*.proto with grpcio-tools at build time, and copy
the web UI's charting library (Chart.js, installed by npm from ui/package-lock.json) into the
package, and compile the OTLP fast path (src/processor/mapping/_wire.c) with the machine's C
compiler, as sysconfig describes it.

The generated files are written beside the sources (src/<package path of the .proto>,
src/processor/ui/static/vendor/), so an editable install serves them from the checkout; a
regular wheel force-includes them. They are never committed (.gitignore).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
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
        generated += vendor_ui(root / "ui", out / "processor" / "ui" / "static" / "vendor")
        extension = compile_extension(out / "processor" / "mapping" / "_wire.c")
        if extension is not None:
            generated.append(extension)
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
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


# npm package file -> the name the UI loads it by (static/vendor/<name>).
UI_VENDOR = {"chart.js/dist/chart.umd.min.js": "chart.umd.min.js"}


def vendor_ui(source: Path, dest: Path) -> list[Path]:
    """``npm ci`` in ui/ (exact versions from its lock file), then copy the files the UI
    serves. Fails loudly without npm: a UI without its charts would be a silent stub."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to build the web UI's charting library (ui/)")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=source, check=True
    )
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, target in UI_VENDOR.items():
        path = dest / target
        shutil.copyfile(source / "node_modules" / name, path)
        written.append(path)
    return written


def compile_extension(source: Path) -> Path | None:
    """Compile the C fast path beside its source; on failure warn and return None (the
    processor then routes with the pure-Python mapper and says so at start)."""
    target = source.with_name(source.stem + sysconfig.get_config_var("EXT_SUFFIX"))
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    flags = [
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        "-Werror=implicit-function-declaration",
        f"-I{sysconfig.get_paths()['include']}",
    ]
    try:
        subprocess.run([*compiler, *flags, str(source), "-o", str(target)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"warning: the OTLP fast path was not compiled ({exc})", file=sys.stderr)
        return None
    return target
