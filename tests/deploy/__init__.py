"""Deploy artefacts: Helm chart, images, docker compose, kind scripts — checked without a cluster."""
