# One image for every role (migrate, api, worker). The torch build is a build argument:
#   docker build --build-arg TORCH_VARIANT=cpu -t taas:cpu .
#   docker build --build-arg TORCH_VARIANT=cu128 -t taas:cuda .
FROM python:3.11-slim

ARG TORCH_VARIANT=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TAAS_HOME=/var/lib/taas

# torch first, from the index of the chosen build, so the project install below keeps it.
RUN pip install "torch>=2.10" "torchvision>=0.25" \
        --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"

WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY sdk ./sdk
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
# Non-editable: the image runs the installed package, migrations included, from any directory.
RUN pip install . && rm -rf /src

RUN useradd --system --create-home --home-dir /var/lib/taas taas
USER taas
WORKDIR /var/lib/taas
EXPOSE 8000
ENTRYPOINT ["taas"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
