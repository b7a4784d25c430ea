# syntax=docker/dockerfile:1
# radraft's production image: one image for the gateway, the web app and the workers.
#
#   CPU image (gateway, web, CPU-only workers):
#     docker build -t radraft:cpu .
#   GPU workers keep PyPI's CUDA build of torch (radraft itself asks only for torch>=2.4):
#     docker build --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t radraft:cuda .
#
# Stage 1 builds radraft's wheel from the source (no editable install, no source tree in the
# image); stage 2 installs torch, then the wheel and its dependencies, and runs as an
# unprivileged user. Health checks are per service, in compose.yaml (radraft health ...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY radraft ./radraft
COPY radraft_cli ./radraft_cli
COPY gateway ./gateway
COPY worker ./worker
COPY reporting ./reporting
COPY migrations ./migrations
RUN python -m build --wheel --outdir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RADRAFT_DATA_DIR=/var/lib/radraft
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
RUN groupadd --system --gid 10001 radraft \
    && useradd --system --uid 10001 --gid radraft --home-dir /var/lib/radraft --create-home \
       --shell /usr/sbin/nologin radraft
USER 10001:10001
WORKDIR /var/lib/radraft
VOLUME ["/var/lib/radraft"]
# DICOM (C-STORE/C-ECHO), web app and DICOMweb, HL7 order intake (when RADRAFT_HL7_LISTEN_PORT).
EXPOSE 11112 8000 2575
ENTRYPOINT ["radraft"]
CMD ["--help"]
