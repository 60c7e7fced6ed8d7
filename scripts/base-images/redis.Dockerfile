# Stand-in for redis:7.2 from Debian's redis-server (7.0): what the compose file uses of it is
# `redis-server …` as the command, `redis-cli` for the healthcheck and /data as the working directory.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && mkdir -p /data
WORKDIR /data
VOLUME ["/data"]
EXPOSE 6379
CMD ["redis-server"]
