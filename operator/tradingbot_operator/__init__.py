"""The tradefleet operator: a TradingBot custom resource in, one running bot per trading pair out.

Layout, one concern per module:
    settings.py   operator settings from the environment (bot image, default Secrets, intervals)
    spec.py       TradingBot spec -> typed, validated `BotSpec` (and the bot.yaml it implies)
    render.py     pure: BotSpec -> desired ConfigMap, Deployment, Service, ServiceMonitor
    conditions.py pure: observations -> status (phase, metav1.Condition list, observedGeneration)
    report.py     the bot's own /status report -> status.bot
    kube.py       the only module that talks to the Kubernetes API for children (create/patch/read)
    handlers.py   thin kopf handlers wiring the above
    health.py     /livez, /readyz, /metrics of the operator process
    cli.py        `tradefleet operator ...`

The package is not named `operator`: that would shadow the standard library module.
"""
