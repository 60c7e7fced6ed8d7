"""The operator's own Prometheus metrics, on a registry injected per process (and per test).

    tradefleet_operator_reconciles_total{result}  ok | invalid | error: one per handled spec
    tradefleet_operator_errors_total{kind}        temporary | permanent | report
    tradefleet_operator_bots{phase}               TradingBots by status.phase, as last seen

Alert on `increase(tradefleet_operator_errors_total{kind="permanent"}[15m]) > 0` and on
`tradefleet_operator_bots{phase="Degraded"} > 0`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from tradingbot_operator.conditions import PHASES

RESULTS = ("ok", "invalid", "error")
ERROR_KINDS = ("temporary", "permanent", "report")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.reconciles = Counter(
            "tradefleet_operator_reconciles_total",
            "TradingBot specs handled, by result",
            ["result"],
            registry=self.registry,
        )
        self.errors = Counter(
            "tradefleet_operator_errors_total",
            "Errors while reconciling or reading bot reports, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.bots = Gauge(
            "tradefleet_operator_bots", "TradingBots by phase", ["phase"], registry=self.registry
        )
        # Pre-create every series so dashboards and rate() see zeros, not gaps.
        for result in RESULTS:
            self.reconciles.labels(result)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)
        for phase in PHASES:
            self.bots.labels(phase).set(0)
        self._phases: dict[tuple[str, str], str] = {}

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Record a bot's phase (None: the bot is gone) and recount the gauge."""
        key = (namespace, name)
        if phase is None:
            self._phases.pop(key, None)
        else:
            self._phases[key] = phase
        counts = dict.fromkeys(PHASES, 0)
        for p in self._phases.values():
            counts[p] = counts.get(p, 0) + 1
        for p, n in counts.items():
            self.bots.labels(p).set(n)
