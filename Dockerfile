# unigate as a container image: a build stage with the pinned toolchain, then a small runtime
# stage holding the binary and the mapping files, running as an unprivileged user.
#
#   docker build -t unigate .
#   docker run --rm -p 8080:8080 unigate serve --sandbox --listen 0.0.0.0:8080
#   docker run --rm -p 8080:8080 -v "$PWD/config.yaml:/etc/unigate/config.yaml:ro" \
#     -v unigate-data:/var/lib/unigate -e UNIGATE_API_TOKEN=… unigate
#
# The config's `mappings_dir` should be /usr/share/unigate/mappings (baked in) or a mounted
# folder; a SQLite store belongs under /var/lib/unigate (a volume). Provider calls use rustls
# with the Mozilla roots compiled in, so the image needs no CA bundle.

FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p unigate-gateway \
 && cp target/release/unigate /usr/local/bin/unigate

FROM debian:trixie-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/unigate --create-home unigate \
 && mkdir -p /etc/unigate
COPY --from=build /usr/local/bin/unigate /usr/local/bin/unigate
COPY mappings /usr/share/unigate/mappings
USER unigate
WORKDIR /var/lib/unigate
EXPOSE 8080
# /health answers 200 while the process serves; bash's /dev/tcp saves adding curl to the image.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 200'"]
ENTRYPOINT ["unigate"]
CMD ["serve", "--config", "/etc/unigate/config.yaml", "--listen", "0.0.0.0:8080"]
