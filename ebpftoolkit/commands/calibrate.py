"""``ebpftoolkit calibrate``: measure what a traced call costs on this machine (cached)."""
from __future__ import annotations

HELP = "measure what one traced GPU API call costs on this machine (GpuTrace.overhead() uses it)"


def add_arguments(p) -> None:
    p.description = ("Time a do-nothing function untraced and traced by GpuTrace (an emulated and a single-stepped "
                     "attach point, with and without a return probe); the result is cached per kernel and CPU.")
    p.add_argument("--force", action="store_true", help="measure again even if this machine has a result")
    p.add_argument("--repeat", type=int, default=5, help="interleaved runs per case (default 5)")


def run(args) -> int:
    from ..calibration import calibrate
    c = calibrate(repeat=args.repeat, force=args.force)
    print(f"emulated attach point: {c['emulated_us']:.2f} us per call; single-stepped: {c['single_stepped_us']:.2f} us; "
          f"a return probe adds {c['return_us']:.2f} us\n({c['source']})")
    return 0
