"""W3C Trace Context (`traceparent`): continue the caller's trace or start one."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

# version 00: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    """This hop's place in a trace: the trace id, this hop's own span id, the flags."""

    trace_id: str
    span_id: str
    flags: str = "01"

    def traceparent(self) -> str:
        """The header a call made from this hop carries: this hop is the parent."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def _new_span_id() -> str:
    return secrets.token_hex(8)


def continue_or_start(values: list[str]) -> TraceContext:
    """A new span in the caller's trace if it sent one valid traceparent, else a new trace."""
    if len(values) == 1:
        match = _TRACEPARENT.match(values[0].strip())
        if match and match[1] != _ZERO_TRACE and match[2] != _ZERO_SPAN:
            return TraceContext(trace_id=match[1], span_id=_new_span_id(), flags=match[3])
    return TraceContext(trace_id=secrets.token_hex(16), span_id=_new_span_id())
