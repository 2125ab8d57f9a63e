"""Bookkeeping around every SDK call: deadlines, bounded retries, error mapping, call counting and dry runs.

Cloud providers and traffic routers both talk to a cloud API, and both must behave the same way when that API is
slow, throttled or wrong, so the rules live here once (patroni's "one decorator per backend" idea):

- every SDK call goes through `ApiCaller._read` or `ApiCaller._write`, which count it under an operation name
  (`ec2.describe_instance_status`), retry throttling, 5xx and transport errors with tenacity (exponential backoff
  with jitter, never shorter than the server's Retry-After) and stop before the deadline would be passed;
- an error that survives is translated once, at this boundary, into one of our categories with a one-line message
  naming the site and subject; the SDK exception stays attached as `__cause__`;
- with `dry_run` set, a write is recorded as a `PlannedCall` instead of being made and returns `None`: the
  `failover plan` command can show what a failover would call without changing anything, while reads still run
  so the plan reflects the real state.

Deadlines are measured on an injectable monotonic `timer` and waits use an injectable `sleep`, so a simulator on a
virtual clock can drive the same code without real waiting.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import threading
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import tenacity

from orchestrator.core.errors import FailoverError, ProviderError

T = TypeVar("T")

log = logging.getLogger(__name__)

MIN_ATTEMPT_TIMEOUT = 0.1  # seconds: a last attempt at an expired deadline still gets a short try


@dataclass(frozen=True)
class PlannedCall:
    """A write that a dry run would have made: the operation name and the parameters it would have sent."""

    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{self.operation}({args})"


class Deadline:
    """A moment on a monotonic timer after which an operation must give up."""

    def __init__(self, seconds: float, timer: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._timer = timer
        self._ends = timer() + seconds

    def remaining(self) -> float:
        return max(0.0, self._ends - self._timer())

    @property
    def expired(self) -> bool:
        return self._timer() >= self._ends

    def capped(self, seconds: float) -> Deadline:
        """The earlier of this deadline and `seconds` from now."""
        return Deadline(min(seconds, self.remaining()), self._timer)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def brief(exc: BaseException, limit: int = 240) -> str:
    """The first line of an exception, with its type: enough for a one-line error, never a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ApiCaller:
    """The call bookkeeping shared by `CloudProvider` and `TrafficRouter` (see the module docstring).

    Subclasses implement `_translate`, `_retryable`, and optionally `_retry_after` and `_timeout_kwargs`.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        *,
        call_deadline: float = 20.0,
        request_timeout: float = 10.0,
        backoff: tuple[float, float] = (0.2, 5.0),
        jitter: bool = True,
        timer: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        dry_run: bool = False,
    ) -> None:
        self.call_deadline = call_deadline
        self.request_timeout = request_timeout
        self.dry_run = dry_run
        self.planned: list[PlannedCall] = []
        self.calls: Counter[str] = Counter()  # every SDK call attempt, by operation name; `.clear()` resets
        self.writes: Counter[str] = Counter()  # the subset of `calls` that changed something
        # Jitter spreads the retries of many callers; a simulation turns it off to replay the same run from a seed.
        self._backoff: tenacity.wait.wait_base = (
            tenacity.wait_random_exponential(multiplier=backoff[0], max=backoff[1]) if jitter
            else tenacity.wait_exponential(multiplier=backoff[0], max=backoff[1])
        )
        self._timer = timer
        self._sleep = sleep
        self._lock = threading.Lock()
        self._local = threading.local()  # the deadline of the public operation running on this thread

    # --- what adapters implement -------------------------------------------------------------------------------

    @property
    @abstractmethod
    def scope(self) -> str:
        """Who is calling, for error messages: `site aws-hk`, `route53`."""

    @abstractmethod
    def _translate(self, exc: Exception) -> FailoverError | None:
        """Map an SDK exception to `ProviderAuthError` or `ProviderNotFound` (message: what is wrong, briefly),
        or return None to let it become a plain `ProviderError`. Must not raise."""

    @abstractmethod
    def _retryable(self, exc: Exception) -> bool:
        """True for throttling, 5xx and transport errors (timeouts, refused connections): worth another try."""

    def _retry_after(self, exc: Exception) -> float | None:
        """The server's Retry-After for this error, in seconds, when the SDK exposes it."""
        return None

    def _timeout_kwargs(self, timeout: float) -> dict[str, Any]:
        """Keyword arguments that bound one SDK request to `timeout` seconds (none where the client fixes it)."""
        return {}

    # --- the bookkeeping ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _deadline(self, seconds: float) -> Iterator[Deadline]:
        """Run a public operation under a deadline; nested SDK calls never outlive it."""
        outer: Deadline | None = getattr(self._local, "deadline", None)
        deadline = outer.capped(seconds) if outer is not None else Deadline(seconds, self._timer)
        self._local.deadline = deadline
        try:
            yield deadline
        finally:
            self._local.deadline = outer

    def _active_deadline(self) -> Deadline:
        """The running operation's deadline capped by `call_deadline`: the budget of one call and its retries."""
        outer: Deadline | None = getattr(self._local, "deadline", None)
        return outer.capped(self.call_deadline) if outer is not None else Deadline(self.call_deadline, self._timer)

    def _operation_deadline(self) -> Deadline:
        """The running public operation's whole deadline (`call_deadline` when none runs): what waiting for a
        cloud's long-running operation may use, which is longer than one call's budget (`_active_deadline`)."""
        outer: Deadline | None = getattr(self._local, "deadline", None)
        return outer if outer is not None else Deadline(self.call_deadline, self._timer)

    def _read(self, operation: str, fn: Callable[..., T], /, *, subject: str = "", **params: Any) -> T:
        """Call `fn(**params)` with retries; it must not change anything at the provider."""
        return self._attempts(operation, fn, params, subject)

    def _write(self, operation: str, fn: Callable[..., T], /, *, subject: str = "", **params: Any) -> T | None:
        """Call `fn(**params)` with retries, or only record it when `dry_run` is set (then return None).
        Writes must be idempotent at the provider (start, stop, UPSERT): a retry after a lost answer is safe."""
        if self.dry_run:
            with self._lock:
                self.planned.append(PlannedCall(operation, dict(params)))
            log.info("%s: dry run, not calling %s", self.scope, operation)
            return None
        result = self._attempts(operation, fn, params, subject)
        with self._lock:
            self.writes[operation] += 1
        return result

    def _attempts(self, operation: str, fn: Callable[..., T], params: Mapping[str, Any], subject: str) -> T:
        deadline = self._active_deadline()

        def attempt() -> T:
            with self._lock:
                self.calls[operation] += 1
            timeout = max(MIN_ATTEMPT_TIMEOUT, min(self.request_timeout, deadline.remaining()))
            return fn(**params, **self._timeout_kwargs(timeout))

        def stop(state: tenacity.RetryCallState) -> bool:
            return state.upcoming_sleep >= deadline.remaining()

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, Exception) and self._retryable(exc)),
            wait=self._wait,
            stop=stop,
            sleep=self._sleep,
            before_sleep=lambda state: log.info(
                "%s: %s failed (%s); retrying in %.2fs", self.scope, operation, _outcome(state), state.upcoming_sleep
            ),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except FailoverError:
            raise
        except Exception as exc:
            raise self._mapped(exc, operation, subject, deadline) from exc

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Exponential backoff (with jitter unless turned off), never less than the server's Retry-After."""
        backoff = float(self._backoff(state))
        exc = state.outcome.exception() if state.outcome is not None else None
        hinted = self._retry_after(exc) if isinstance(exc, Exception) else None
        return backoff if hinted is None else max(backoff, hinted)

    def _mapped(self, exc: Exception, operation: str, subject: str, deadline: Deadline) -> FailoverError:
        where = f"{self.scope}: {subject}" if subject else self.scope
        translated = self._translate(exc)
        if translated is not None:
            return type(translated)(f"{where}: {translated} [{operation}]")
        if self._retryable(exc):
            return ProviderError(
                f"{where}: {operation} still failing when its {deadline.seconds:.1f}s deadline ran out: {brief(exc)}"
            )
        return ProviderError(f"{where}: {operation} failed: {brief(exc)}")

    def _pause(self, deadline: Deadline, interval: float) -> None:
        """Sleep for a poll interval, but never past the deadline."""
        self._sleep(max(0.0, min(interval, deadline.remaining())))


def _outcome(state: tenacity.RetryCallState) -> str:
    exc = state.outcome.exception() if state.outcome is not None else None
    return brief(exc) if exc is not None else "no result"


@contextlib.contextmanager
def plan_recorder(*callers: ApiCaller) -> Iterator[list[PlannedCall]]:
    """Run providers and routers in dry-run mode for the block and yield one list that collects the writes they
    would have made, in the order they were planned (the callers share the list during the block).

    >>> with plan_recorder(provider, router) as planned:
    ...     run_the_runbook()         # reads go through, writes are only recorded
    """
    planned: list[PlannedCall] = []
    saved = [(caller, caller.dry_run, caller.planned) for caller in callers]
    for caller in callers:
        caller.dry_run = True
        caller.planned = planned
    try:
        yield planned
    finally:
        for caller, was_dry, own in saved:
            caller.dry_run = was_dry
            caller.planned = own
