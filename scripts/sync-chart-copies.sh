#!/usr/bin/env bash
# Helm reads only files inside the chart: refresh its copies of the repo's CRDs and Grafana
# dashboard after either changes (tests/deploy/test_chart.py fails until they are identical).
set -euo pipefail
cd "$(dirname "$0")/.."
cp crds/tradingbots.tradefleet.io.yaml crds/tradingfleets.tradefleet.io.yaml crds/kopf-peering.yaml helm/tradefleet/crds/
mkdir -p helm/tradefleet/dashboards
cp dashboards/tradefleet.json helm/tradefleet/dashboards/
echo "chart copies refreshed: helm/tradefleet/crds/, helm/tradefleet/dashboards/"
