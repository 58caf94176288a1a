"""Views of a recording: timelines, charts, a self-contained HTML report, Chrome-trace and Perfetto export.

Everything here reads a Session's ``tables``, ``lost``, ``loss_windows`` and
``metadata`` (a saved one loaded with ``Session.load`` is enough: no root, no BCC).
"""
from .charts import (bytes_moved, frame_times, gpu_memory, misses_by_function, miss_rate_over_time, mpki,
                     pmu_rates, process_lifetimes)
from .chrome_trace import to_chrome_trace
from .perfetto_trace import to_perfetto
from .report import render_html
from .model import TraceModel
from .timeline import static_timeline
from .timeline_html import timeline_fragment
from .timeline_widget import InteractiveTimeline, timeline
from .widget import TimelineWidget

__all__ = ["TraceModel", "timeline", "InteractiveTimeline", "timeline_fragment", "static_timeline", "TimelineWidget",
           "render_html", "to_chrome_trace", "to_perfetto",
           "miss_rate_over_time", "misses_by_function", "mpki", "frame_times",
           "bytes_moved", "gpu_memory", "process_lifetimes", "pmu_rates"]
