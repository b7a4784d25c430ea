# One image for gateway, worker and web. GPU workers: build with a CUDA base and let pip keep
# its CUDA build of torch (radraft asks only for torch>=2.4).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends dcmtk && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/radraft
COPY . .
RUN pip install --no-cache-dir -e .
ENV RADRAFT_DATA_DIR=/var/lib/radraft
ENTRYPOINT ["radraft"]
