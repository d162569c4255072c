"""`dpx check`: run dpx's CUDA kernels against their twins on this GPU and record which
passed; `dpx train` on this GPU then runs those kernels, and the generic code for the rest."""
from __future__ import annotations

import datetime
import math
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="test dpx's CUDA kernels on this GPU against the "
                       "pure-PyTorch ops and record which ones training may use")
    p.add_argument("--device", default="cuda",
                   help="cuda, cuda:N, or cpu (the CPU kernels, nothing recorded; default cuda)")
    p.add_argument("--family", nargs="+", default=None,
                   help="op families to check (default: all)")
    p.add_argument("--no-record", action="store_true", help="print the table only")


def _table(rows) -> None:
    print(f"{'family':<14} {'op':<46} {'dtype':<8} {'max error':>10} {'result':<6} "
          f"{'ms':>8}  note")
    for r in rows:
        err = "-" if math.isinf(r.error) else f"{r.error:.2e}"
        print(f"{r.family:<14} {r.op:<46} {r.dtype:<8} {err:>10} "
              f"{'pass' if r.passed else 'FAIL':<6} {r.ms:8.2f}  {r.note}")


def _families(rows, names) -> dict:
    out = {}
    for f in names:
        mine = [r for r in rows if r.family == f]
        worst = max((r.error for r in mine), default=math.inf)
        out[f] = {"passed": bool(mine) and all(r.passed for r in mine),
                  "max_error": None if math.isinf(worst) else worst,
                  "failed": [f"{r.op} {r.dtype}: {r.note or f'error {r.error:.2e}'}"
                             for r in mine if not r.passed]}
    return out


def write_record(path, key: dict, families: dict, date: str) -> None:
    """Replace this key's record (and any stale one of the same GPU), atomically."""
    import json

    from dpx.io.checkpoint import atomic_write
    from dpx.ops import paths
    records, _why = paths.read_records(path)
    records = [r for r in records if not (isinstance(r.get("key"), dict)
                                          and r["key"].get("gpu") == key["gpu"])]
    records.append({"key": key, "date": date, "families": families})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"records": records}, indent=1)))


def _device(name: str):
    import torch
    from dpx.ops import _library, se_a_embed
    device = torch.device(name)
    if not _library.LOADED:
        raise ValueError("dpx's op library is not loaded (DPX_OPS=reference, or never built): "
                         "there are no kernels to check")
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"dpx check: no CUDA device (torch {torch.__version__}, CUDA "
              f"{torch.version.cuda or 'not built'}): nothing to check; on a CPU dpx runs its "
              f"compiled kernels, which its test suite checks")
        return None
    if device.type == "cuda" and not se_a_embed.HAS_CUDA:
        print("dpx check: dpx's op library was built without CUDA kernels (no nvcc or a CPU "
              "torch at install): a GPU runs the generic path; nothing to check")
        return None
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"--device must be cuda, cuda:N or cpu, got {name!r}")
    return device


def run(args) -> int:
    import torch
    from dpx.ops import paths, selfcheck
    families = args.family or list(paths.FAMILIES)
    unknown = [f for f in families if f not in paths.FAMILIES]
    if unknown:
        raise ValueError(f"--family: unknown {unknown}; the families are "
                         f"{', '.join(paths.FAMILIES)}")
    device = _device(args.device)
    if device is None:
        return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"dpx check on {device} ({name}): {', '.join(families)}, each in a child process",
          flush=True)
    rows = selfcheck.run(str(device), families)
    _table(rows)
    summary = _families(rows, families)
    failed = [f for f, s in summary.items() if not s["passed"]]
    print(f"{len(families) - len(failed)} of {len(families)} families passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    if device.type == "cuda" and not args.no_record:
        index = device.index if device.index is not None else torch.cuda.current_device()
        path = paths.record_path()
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        write_record(path, paths.device_key(index), summary, stamp)
        print(f"recorded in {path}: dpx train on this GPU runs the kernels of "
              f"{', '.join(f for f in families if f not in failed) or 'no family'} and the "
              f"generic code for the rest ({paths.ENV}=0|1 forces either)")
    sys.stdout.flush()
    return 1 if failed else 0
