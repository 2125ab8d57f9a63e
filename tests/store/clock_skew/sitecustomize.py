"""Shift this process's wall clock by $FAILOVER_TEST_CLOCK_SKEW seconds, as a host with broken NTP would have it.

Put this directory first on PYTHONPATH of a child process. Only the wall clock moves (`time.time`, `time.time_ns`,
and so `datetime.now`); the monotonic clock, which no host agrees on anyway, stays. libfaketime cannot do this for
Python 3.11, whose waits use the monotonic clock through calls libfaketime also shifts.
"""

import os
import time

_skew = float(os.environ.get("FAILOVER_TEST_CLOCK_SKEW", "0") or 0)
if _skew:
    _real_time, _real_time_ns = time.time, time.time_ns
    time.time = lambda: _real_time() + _skew
    time.time_ns = lambda: _real_time_ns() + int(_skew * 1e9)
