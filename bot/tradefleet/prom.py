"""Prometheus metrics for a bot: counters, gauges, histograms, a registry, and /metrics' two formats.

Why it exists: prometheus_client cost every bot ~1.3 MiB of RSS at ready (issue #17's import diet):
its package imports its HTTP and WSGI servers, push gateway client and gzip (`http.server`, `html`,
`wsgiref`, `socketserver`, `urllib.request`) before anything else, and a bot uses none of them. This
module is what a bot does use, written here: the same metric types, names, label handling and
`_created` series, the same collectors' metrics (`process_*`, `python_gc_*`, `python_info`), and the
same bytes on /metrics, in the classic text format (0.0.4) and in OpenMetrics, chosen from the
`Accept` header as prometheus_client 0.26 chooses. `tests/obs/test_prom_compat.py` holds it to
prometheus_client's output byte for byte. The operator still uses prometheus_client itself.

What it refuses: metric and label names outside Prometheus' legacy character set (so no name ever
needs escaping), a label named `le` on a histogram, unsorted buckets, a counter going down, and two
collectors exposing the same name in one registry (`ValueError`, as "Duplicated timeseries").
Values are guarded by a lock per metric: the SQLite writer thread updates some of them.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, Self

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
INF = float("inf")
CONTENT_TYPE_TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_TEXT_1_0_0 = "text/plain; version=1.0.0; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OPENMETRICS = "application/openmetrics-text"
START_HELP = "Start time of the process since unix epoch in seconds."
ESCAPINGS = ("allow-utf-8", "underscores", "dots", "values")


def _created_series() -> bool:
    """prometheus_client's switch, honoured the same way: PROMETHEUS_DISABLE_CREATED_SERIES=true."""
    return os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in ("true", "1", "t")


def go_float(value: float) -> str:
    """A float as Prometheus' Go clients write it: Python's repr, but an exponent from 1e7 up."""
    v = float(value)
    if v == INF:
        return "+Inf"
    if v == -INF:
        return "-Inf"
    if math.isnan(v):
        return "NaN"
    text = repr(v)
    dot = text.find(".")
    if v > 0 and dot > 6:  # e.g. 12345678.0 -> 1.2345678e+07
        digits = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{digits}e+{dot - 1:02d}"
    return text


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Family:
    """One metric family as a collector yields it: the name without `_total` for a counter."""

    name: str
    documentation: str
    type: str  # counter, gauge, histogram
    samples: list[Sample] = field(default_factory=list)

    def add(self, suffix: str, labels: dict[str, str], value: float) -> None:
        self.samples.append(Sample(self.name + suffix, labels, value))


def counter_family(name: str, documentation: str, labels: Sequence[str] = ()) -> LabelledFamily:
    return LabelledFamily(name.removesuffix("_total"), documentation, "counter", labelnames=tuple(labels))


def gauge_family(name: str, documentation: str, labels: Sequence[str] = ()) -> LabelledFamily:
    return LabelledFamily(name, documentation, "gauge", labelnames=tuple(labels))


@dataclass
class LabelledFamily(Family):
    """A family a custom collector fills: `add_metric(label values, value)`."""

    labelnames: tuple[str, ...] = ()

    def add_metric(self, labelvalues: Sequence[str], value: float) -> None:
        suffix = "_total" if self.type == "counter" else ""
        self.add(suffix, dict(zip(self.labelnames, labelvalues, strict=True)), float(value))


class Collector(Protocol):
    def collect(self) -> Iterable[Family]: ...


class Registry:
    """Collectors in registration order; `collect()` asks each of them, in that order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collectors: dict[Collector, set[str]] = {}

    def register(self, collector: Collector) -> None:
        names = _names_of(collector)
        with self._lock:
            taken = set().union(*self._collectors.values()) & names
            if taken:
                raise ValueError(f"Duplicated timeseries in the registry: {sorted(taken)}")
            self._collectors[collector] = names

    def unregister(self, collector: Collector) -> None:
        with self._lock:
            del self._collectors[collector]

    def collect(self) -> Iterator[Family]:
        with self._lock:
            collectors = list(self._collectors)
        for collector in collectors:
            yield from collector.collect()

    def get_sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's value, or None (for tests and the demo's view; it collects everything)."""
        wanted = labels or {}
        for family in self.collect():
            for s in family.samples:
                if s.name == name and s.labels == wanted:
                    return s.value
        return None


def _names_of(collector: Collector) -> set[str]:
    """The names a collector's `describe()` promises (our metrics have one); a collector without it
    is not checked (prometheus_client's default registry does the same: collecting may have effects)."""
    describe = getattr(collector, "describe", None)
    if describe is None:
        return set()
    names: set[str] = set()
    for family in describe():
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
        names |= {family.name, *(family.name + s for s in suffixes.get(family.type, ("",)))}
    return names


# -- metrics ------------------------------------------------------------------------------------------


class _Metric:
    """A metric with its label names; without labels it is its own (only) child."""

    type = ""
    _suffix = ""

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = (),
                 registry: Registry | None = None) -> None:  # fmt: skip
        if self.type == "counter":
            name = name.removesuffix("_total")
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        for label in self.labelnames:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], _Metric] = {}
        self._labelvalues: tuple[str, ...] = ()
        if not self.labelnames:
            self._init_child()
        if registry is not None:
            registry.register(self)

    def _init_child(self) -> None:
        raise NotImplementedError

    def _child_samples(self) -> list[tuple[str, dict[str, str], float]]:
        raise NotImplementedError

    def labels(self, *values: object, **by_name: object) -> Self:
        if not self.labelnames:
            raise ValueError(f"{self.name} has no labels")
        if values and by_name:
            raise ValueError("labels() takes values or names, not both")
        if by_name:
            if sorted(by_name) != sorted(self.labelnames):
                raise ValueError(f"{self.name}: labels are {self.labelnames}, got {sorted(by_name)}")
            key = tuple(str(by_name[n]) for n in self.labelnames)
        else:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: {len(self.labelnames)} label values, got {len(values)}")
            key = tuple(str(v) for v in values)
        with self._lock:
            child: Self | None = self._children.get(key)  # type: ignore[assignment]
            if child is None:
                child = object.__new__(type(self))
                child.__dict__.update(self.__dict__)  # name, labels, buckets, the family's lock
                child._children, child._labelvalues = {}, key
                child._init_child()
                self._children[key] = child
        return child

    def clear(self) -> None:
        """Forget every child (every label combination) of a labelled metric."""
        if not self.labelnames:
            raise ValueError(f"{self.name} has no labels to clear")
        with self._lock:
            self._children = {}

    def describe(self) -> list[Family]:
        return [Family(self.name, self.documentation, self.type)]

    def collect(self) -> list[Family]:
        family = Family(self.name, self.documentation, self.type)
        if self.labelnames:
            with self._lock:
                children = list(self._children.values())
        else:
            children = [self]
        for child in children:
            base = dict(zip(self.labelnames, child._labelvalues, strict=True))
            for suffix, labels, value in child._child_samples():
                family.add(suffix, {**base, **labels}, value)
        return [family]

    def _refuse_parent(self) -> None:
        if self.labelnames and not self._labelvalues:
            raise ValueError(f"{self.name} has labels {self.labelnames}: call .labels() first")


class Counter(_Metric):
    type = "counter"

    def _init_child(self) -> None:
        self._value = 0.0
        self._created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self._refuse_parent()
        if amount < 0:
            raise ValueError(f"a counter only goes up: inc({amount}) on {self.name}")
        with self._lock:
            self._value += amount

    def _child_samples(self) -> list[tuple[str, dict[str, str], float]]:
        samples: list[tuple[str, dict[str, str], float]] = [("_total", {}, self._value)]
        if _created_series():
            samples.append(("_created", {}, self._created))
        return samples


class Gauge(_Metric):
    type = "gauge"

    def _init_child(self) -> None:
        self._value = 0.0
        self._function: Callable[[], float] | None = None

    def set_function(self, function: Callable[[], float]) -> None:
        """The gauge's value is `function()` at each collection from now on."""
        self._refuse_parent()
        self._function = function

    def set(self, value: float) -> None:
        self._refuse_parent()
        with self._lock:
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self._refuse_parent()
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)

    def _child_samples(self) -> list[tuple[str, dict[str, str], float]]:
        return [("", {}, float(self._function()) if self._function is not None else self._value)]


class Histogram(_Metric):
    type = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = (),
                 registry: Registry | None = None, buckets: Sequence[float] = ()) -> None:  # fmt: skip
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("buckets not in sorted order")
        if bounds and bounds[-1] != INF:
            bounds.append(INF)
        if len(bounds) < 2:
            raise ValueError("a histogram needs at least two buckets")
        if "le" in labelnames:
            raise ValueError("a histogram cannot have a label named le")
        self._bounds = bounds
        self._les = [go_float(b) for b in bounds]
        super().__init__(name, documentation, labelnames, registry)

    def _init_child(self) -> None:
        self._counts = [0.0] * len(self._bounds)
        self._sum = 0.0
        self._created = time.time()

    def observe(self, amount: float) -> None:
        self._refuse_parent()
        with self._lock:
            self._sum += amount
            for i, bound in enumerate(self._bounds):
                if amount <= bound:
                    self._counts[i] += 1.0
                    break

    def _child_samples(self) -> list[tuple[str, dict[str, str], float]]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        samples: list[tuple[str, dict[str, str], float]] = []
        acc = 0.0
        for le, count in zip(self._les, counts, strict=True):
            acc += count
            samples.append(("_bucket", {"le": le}, acc))
        samples.append(("_count", {}, acc))
        if self._bounds[0] >= 0:
            samples.append(("_sum", {}, total))
        if _created_series():
            samples.append(("_created", {}, self._created))
        return samples


# -- the standard collectors --------------------------------------------------------------------------


class ProcessCollector:
    """`process_*` from /proc/PID (Linux; elsewhere it yields nothing, as prometheus_client's)."""

    def __init__(self, pid: Callable[[], int | str] = lambda: "self", proc: str = "/proc") -> None:
        self._pid, self._proc = pid, proc
        self._ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._btime = 0.0
        try:
            with open(os.path.join(proc, "stat"), "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        self._btime = float(line.split()[1])
        except OSError:
            pass

    def collect(self) -> list[Family]:
        if not self._btime:
            return []
        root = os.path.join(self._proc, str(self._pid()).strip())
        out: list[Family] = []
        try:
            with open(os.path.join(root, "stat"), "rb") as f:
                fields = f.read().split(b")")[-1].split()
            vms, rss = float(fields[20]), float(fields[21]) * self._page
            start = float(fields[19]) / self._ticks + self._btime
            cpu = float(fields[11]) / self._ticks + float(fields[12]) / self._ticks
            out += [
                gauge_value("process_virtual_memory_bytes", "Virtual memory size in bytes.", vms),
                gauge_value("process_resident_memory_bytes", "Resident memory size in bytes.", rss),
                gauge_value("process_start_time_seconds", START_HELP, start),
                counter_value("process_cpu_seconds", "Total user and system CPU time spent in seconds.", cpu),
            ]
        except OSError:
            pass
        try:
            max_fds = None
            with open(os.path.join(root, "limits"), "rb") as f:
                for line in f:
                    if line.startswith(b"Max open file"):
                        max_fds = float(line.split()[3])
                        break
            fds = float(len(os.listdir(os.path.join(root, "fd"))))
            if max_fds is not None:
                out.append(gauge_value("process_open_fds", "Number of open file descriptors.", fds))
                out.append(
                    gauge_value("process_max_fds", "Maximum number of open file descriptors.", max_fds)
                )
        except OSError:
            pass
        return out


class GcCollector:
    """`python_gc_*`: the garbage collector's counts per generation."""

    def collect(self) -> list[Family]:
        collected = counter_family(
            "python_gc_objects_collected", "Objects collected during gc", ["generation"]
        )
        uncollectable = counter_family(
            "python_gc_objects_uncollectable", "Uncollectable objects found during GC", ["generation"]
        )
        collections = counter_family(
            "python_gc_collections", "Number of times this generation was collected", ["generation"]
        )
        for generation, stat in enumerate(gc.get_stats()):
            collected.add_metric([str(generation)], stat["collected"])
            uncollectable.add_metric([str(generation)], stat["uncollectable"])
            collections.add_metric([str(generation)], stat["collections"])
        return [collected, uncollectable, collections]


class PlatformCollector:
    """`python_info{implementation,major,minor,patchlevel,version} 1`."""

    def __init__(self) -> None:
        major, minor, patchlevel = platform.python_version_tuple()
        info = {"version": platform.python_version(), "implementation": platform.python_implementation(),
                "major": major, "minor": minor, "patchlevel": patchlevel}  # fmt: skip
        family = gauge_family("python_info", "Python platform information", list(info))
        family.add_metric(list(info.values()), 1)
        self._families: list[Family] = [family]

    def collect(self) -> list[Family]:
        return self._families


def gauge_value(name: str, documentation: str, value: float) -> Family:
    return Family(name, documentation, "gauge", [Sample(name, {}, value)])


def counter_value(name: str, documentation: str, value: float) -> Family:
    return Family(name, documentation, "counter", [Sample(name + "_total", {}, value)])


# -- exposition ---------------------------------------------------------------------------------------


def _name(name: str, escaping: str) -> str:
    """Every name here is in the legacy set (checked at creation): only `dots` escaping changes it."""
    return name.replace("_", "__") if escaping == "dots" else name


def _om_sample_name(name: str, escaping: str) -> str:
    """OpenMetrics sample names as prometheus_client 0.26 writes them: escaped even when legal, so
    `values` escaping gives `U__` and doubled underscores (its HELP/TYPE lines do not: kept as is)."""
    if escaping == "values":
        return "U__" + name.replace("_", "__")
    return _name(name, escaping)


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(labels: dict[str, str], escaping: str) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{_name(k, escaping)}="{_label_value(v)}"' for k, v in sorted(labels.items()))
    return "{" + pairs + "}"


def text_format(registry: Registry, escaping: str = "underscores") -> bytes:
    """The classic text format: a counter's family is named `..._total`; `_created` samples come
    after the family's own, as a gauge family of their own."""
    out: list[str] = []
    for family in registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {_name(name, escaping)} {doc}\n# TYPE {_name(name, escaping)} {family.type}\n")
        created: list[str] = []
        for s in family.samples:
            line = f"{_name(s.name, escaping)}{_labels(s.labels, escaping)} {go_float(s.value)}\n"
            (created if s.name == family.name + "_created" else out).append(line)
        if created:
            cname = _name(family.name + "_created", escaping)
            out.append(f"# HELP {cname} {doc}\n# TYPE {cname} gauge\n")
            out.extend(created)
    return "".join(out).encode()


def openmetrics_format(registry: Registry, escaping: str = "underscores") -> bytes:
    out: list[str] = []
    for family in registry.collect():
        name = _name(family.name, escaping)
        out.append(f"# HELP {name} {_label_value(family.documentation)}\n# TYPE {name} {family.type}\n")
        out.extend(f"{_om_sample_name(s.name, escaping)}{_labels(s.labels, escaping)} {go_float(s.value)}\n"
                   for s in family.samples)  # fmt: skip
    out.append("# EOF\n")
    return "".join(out).encode()


def _param(parts: list[str], key: str) -> str:
    for part in parts:
        k, eq, v = part.strip().partition("=")
        if eq and k == key:
            return v
    return ""


def _at_least_1(version: str) -> bool:
    numbers: list[int] = []
    for part in version.split("."):
        if not part.isdigit():
            return False  # prometheus_client failed on such a version (500); here it is not 1.0.0+
        numbers.append(int(part))
    return tuple(numbers) >= (1, 0, 0)


def choose_encoder(accept: str) -> tuple[Callable[[Registry], bytes], str]:
    """The format and Content-Type for an Accept header, as prometheus_client 0.26 chooses: the first
    OpenMetrics (1.0.0 or later, or no version) or `text/plain` (1.0.0 or later) entry, else 0.0.4."""
    for entry in (accept or "").split(","):
        parts = entry.split(";")
        kind = parts[0].strip()
        if kind not in (OPENMETRICS, "text/plain"):
            continue
        version = _param(parts, "version")
        escaping = _param(parts, "escaping")
        escaping = escaping if escaping in ESCAPINGS else "underscores"
        if kind == OPENMETRICS:
            if not version:
                return openmetrics_format, CONTENT_TYPE_OPENMETRICS
            if _at_least_1(version):
                content_type = (
                    f"application/openmetrics-text; version={version}; charset=utf-8; escaping={escaping}"
                )
                return partial(openmetrics_format, escaping=escaping), content_type
        elif version and _at_least_1(version):
            return partial(text_format, escaping=escaping), f"{CONTENT_TYPE_TEXT_1_0_0}; escaping={escaping}"
    return text_format, CONTENT_TYPE_TEXT_0_0_4
