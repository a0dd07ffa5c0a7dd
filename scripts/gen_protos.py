"""Regenerate netpay/v1/*_pb2*.py(i) from protos/netpay/v1/*.proto.

One command: `python scripts/gen_protos.py`. CI runs it with `--check`, which
fails when the committed generated code differs from what the protos give.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "netpay" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(into: Path) -> list[Path]:
    protos = sorted((PROTO_DIR / "netpay" / "v1").glob("*.proto"))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={into}",
        f"--pyi_out={into}",
        f"--grpc_python_out={into}",
        *[str(p.relative_to(PROTO_DIR)) for p in protos],
    ]
    subprocess.run(cmd, check=True)
    return sorted((into / "netpay" / "v1").glob("*_pb2*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail on drift, write nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        made = generate(Path(tmp))
        names = {p.name for p in made}
        committed = {p.name for p in OUT_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
        if args.check:
            drift = sorted(names ^ committed)
            drift += [
                n
                for n in sorted(names & committed)
                if not filecmp.cmp(Path(tmp) / "netpay" / "v1" / n, OUT_DIR / n, shallow=False)
            ]
            if drift:
                print(f"generated code drifted from protos: {drift}", file=sys.stderr)
                print("run: python scripts/gen_protos.py", file=sys.stderr)
                return 1
            print("generated code matches protos", file=sys.stderr)
            return 0
        for stale in committed - names:
            (OUT_DIR / stale).unlink()
        for p in made:
            shutil.copyfile(p, OUT_DIR / p.name)
    print(f"wrote {len(made)} files to {OUT_DIR.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
