"""Shift this process's wall clock by `$NEMESIS_CLOCK_SKEW` seconds (a host with broken NTP), nothing else.

Put this directory on a child's PYTHONPATH and set the variable: `time.time`, `time.time_ns`, the no-argument
forms of `time.localtime`/`gmtime`/`ctime`/`strftime`, and `datetime.datetime.now`/`utcnow`/`today` all read the
shifted clock. `time.monotonic` and `time.perf_counter` stay true, so asyncio's and threading's waits keep working
(which is why libfaketime, which shifts the monotonic clock of Python 3.11's waits too, cannot be used).
"""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time

_SKEW = float(os.environ.get("NEMESIS_CLOCK_SKEW", "0") or 0)

if _SKEW:
    _real_time, _real_time_ns = _time.time, _time.time_ns
    _real_localtime, _real_gmtime, _real_ctime = _time.localtime, _time.gmtime, _time.ctime
    _real_strftime = _time.strftime

    def time() -> float:
        return _real_time() + _SKEW

    def time_ns() -> int:
        return _real_time_ns() + int(_SKEW * 1_000_000_000)

    def localtime(seconds: float | None = None) -> _time.struct_time:
        return _real_localtime(time() if seconds is None else seconds)

    def gmtime(seconds: float | None = None) -> _time.struct_time:
        return _real_gmtime(time() if seconds is None else seconds)

    def ctime(seconds: float | None = None) -> str:
        return _real_ctime(time() if seconds is None else seconds)

    def strftime(format: str, moment: object = None) -> str:
        return _real_strftime(format, localtime() if moment is None else moment)  # type: ignore[arg-type]

    _time.time, _time.time_ns = time, time_ns
    _time.localtime, _time.gmtime, _time.ctime = localtime, gmtime, ctime  # type: ignore[assignment]
    _time.strftime = strftime

    class _SkewedDatetime(_datetime.datetime):
        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> _SkewedDatetime:
            return cls.fromtimestamp(time(), tz)

        @classmethod
        def utcnow(cls) -> _SkewedDatetime:
            return cls.fromtimestamp(time(), _datetime.UTC).replace(tzinfo=None)

        @classmethod
        def today(cls) -> _SkewedDatetime:
            return cls.fromtimestamp(time())

    _datetime.datetime = _SkewedDatetime  # type: ignore[misc]
