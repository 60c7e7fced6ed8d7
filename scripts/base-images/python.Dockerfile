# Stand-in for python:3.11-slim-bookworm, made from Debian's packages (no registry reachable here).
# Like the official image: python/python3/pip on PATH in /usr/local/bin, pip and setuptools installed
# with pip's own records (so an image can uninstall them), no EXTERNALLY-MANAGED marker, C.UTF-8.
# Unlike it: Debian's 3.11.2 instead of the newest 3.11.x built from source.
# The build context holds the machine's locally added CAs (ca/*.crt): the outbound proxy's CA must
# be trusted by pip inside builds; it is added here, in the base, never in the product Dockerfiles.
FROM debian:bookworm-slim
ENV LANG=C.UTF-8
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates netbase tzdata \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && ln -s /usr/bin/python3 /usr/local/bin/python3 \
    && pip_whl=$(echo /usr/share/python-wheels/pip-*.whl) \
    && python3 "$pip_whl/pip" install --quiet --no-index --no-cache-dir --disable-pip-version-check \
       "$pip_whl" /usr/share/python-wheels/setuptools-*.whl \
    && ln -sf /usr/local/bin/pip3 /usr/local/bin/pip \
    && python -m pip --version
CMD ["python3"]
