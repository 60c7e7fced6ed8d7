# Stand-in for prom/prometheus from Debian's prometheus (2.42): the binary as ENTRYPOINT (the compose
# file passes flags as the command), wget for the healthcheck, /prometheus for the TSDB.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && mkdir -p /prometheus
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
