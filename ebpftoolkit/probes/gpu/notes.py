"""What GpuTrace says at the end of a recording: never a silent zero."""
from __future__ import annotations

from .catalogue import FRAME_BEGIN, FRAME_END, MARK, MARKER_API

__all__ = ["end_notes"]


def end_notes(probe, tables) -> list[str]:
    """An API asked for that recorded nothing says why (nothing loaded it, or nothing called it); frames
    asked for that nothing ended say so too."""
    gpu = tables.get("gpu")
    got = set(gpu["api"].unique()) if gpu is not None and len(gpu) else set()
    follower, frames = probe._follower, probe.config.frames
    wanted = list(probe.config.apis or ()) or \
        ([] if got - {MARKER_API} else sorted({p.spec.api for p in probe.points} - {MARKER_API}) or ["any"])
    loaded: dict[str, set[str]] = {}          # API -> files a traced process was seen to map
    for f in (follower.found if follower else []):
        for a in f.apis:
            if f.pids:
                loaded.setdefault(a, set()).add(f.path)
    out = [f"gpu: {n}" for n in probe._late_notes]
    out += [f"gpu: {f.path} holds {', '.join(f.apis)} calls but could not be probed: {f.error}"
            for f in (follower.found if follower else []) if f.error]
    looked = follower.files_looked_at if follower else 0
    seen = f"{looked} files mapped by the traced processes were looked at" if follower else \
        "libraries loaded while recording were not followed"
    for api in wanted:
        if api in got:
            continue
        if api == "any":
            out.append(f"gpu: no GPU API call was recorded: no traced process loaded a GPU API library ({seen})")
        elif api in loaded or not follower:
            where = ", ".join(sorted(loaded.get(api, ()))) or \
                ", ".join(sorted({p.path for p in probe.points if p.spec.api == api}))
            out.append(f"gpu: {api}: 0 calls recorded: its library was probed ({where}) but no traced "
                       "process called a catalogued function of it")
        else:
            out.append(f"gpu: {api}: 0 calls recorded: no traced process loaded a library of it ({seen})")
    if frames != "swap/present" and gpu is not None and len(gpu):
        enders = (MARK, FRAME_BEGIN, FRAME_END) if frames == "marker" else frames
        if not gpu["call"].isin(enders).any():
            what = "no ebpftoolkit.frame() block or ebpftoolkit.mark() call" if frames == "marker" else \
                f"no call of {', '.join(frames)}"
            out.append(f"gpu: frames={frames!r}: {what} was recorded, so no frame was ended (every call is in "
                       "frame 0)")
    return out
