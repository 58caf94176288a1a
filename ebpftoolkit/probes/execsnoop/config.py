"""ExecSnoop's configuration."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import ProbeConfigError
from ..config import ProbeConfig, bool_option, int_option, power_of_two

__all__ = ["ExecConfig"]


@dataclass(frozen=True)
class ExecConfig(ProbeConfig):
    """``uid``: only this user's processes; ``comm``: only execs whose new command name matches this
    regular expression; ``failed_only``: only failed execs; ``max_args``/``max_arg_len``: arguments
    captured and bytes of each (bcc's defaults: 20 and 128), more is flagged ``argv_truncated``;
    ``filename_len``: bytes of the file name; ``ring_pages``: ring buffer size in pages."""

    kind = "ExecSnoop"
    uid: int | None = None
    comm: str | None = None
    failed_only: bool = False
    max_args: int = 20
    max_arg_len: int = 128
    filename_len: int = 256
    ring_pages: int = 256

    def __post_init__(self):
        if self.uid is not None:
            int_option("uid", self.uid, 0, 2**32 - 2)
        if self.comm is not None:
            if not isinstance(self.comm, str):
                raise ProbeConfigError("comm must be a regular expression string")
            try:
                re.compile(self.comm)
            except (re.error, OverflowError, RecursionError) as exc:
                raise ProbeConfigError(f"comm is not a valid regular expression: {exc}") from None
        bool_option("failed_only", self.failed_only)
        int_option("max_args", self.max_args, 1, 128)
        int_option("max_arg_len", self.max_arg_len, 8, 4096)
        int_option("filename_len", self.filename_len, 16, 4096)
        power_of_two("ring_pages", self.ring_pages, 65536)
