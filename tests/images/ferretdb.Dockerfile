# Test stand-in for the compose file's `mongodb` service (no MongoDB server can be obtained here):
# FerretDB 1.x over SQLite, a MongoDB wire-protocol server, built from the Go module proxy by
# scripts/ferretdb.sh. The build context holds only that static binary. Tests only; never shipped.
FROM debian:bookworm-slim
COPY ferretdb /usr/local/bin/ferretdb
RUN mkdir -p /data/db
VOLUME ["/data/db"]
EXPOSE 27017
# Flags (backend, data dir, listen address, auth user) come from whoever runs it: the compose
# test override passes them all.
ENTRYPOINT ["/usr/local/bin/ferretdb"]
