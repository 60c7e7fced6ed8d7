# Test stand-in for the compose file's `mongodb` service (no MongoDB server can be obtained here):
# FerretDB 1.x over SQLite, a MongoDB wire-protocol server, built from the Go module proxy by
# scripts/ferretdb.sh. The build context holds only that static binary. Tests only; never shipped.
FROM debian:bookworm-slim
COPY ferretdb /usr/local/bin/ferretdb
RUN mkdir -p /data/db
VOLUME ["/data/db"]
EXPOSE 27017
ENTRYPOINT ["/usr/local/bin/ferretdb", "--handler=sqlite", "--sqlite-url=file:/data/db/", "--state-dir=/data/db", \
            "--listen-addr=0.0.0.0:27017", "--debug-addr=-", "--telemetry=disable", "--log-level=warn"]
