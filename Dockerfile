# Multi-stage build of the binary `make build` produces: the build stage runs the
# Makefile's build target itself (same CGO_ENABLED=0, -trimpath and ldflags), so the
# image and `make` cannot drift. go test ./cmd/quorumq/compose/ runs this stage's steps
# without Docker, which is why its RUN steps use paths relative to WORKDIR.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=docker
RUN make build VERSION=${VERSION}
# distroless has no shell to mkdir with: make the data dir here (bin/ is not part of the
# build context, so it starts empty), owned by nonroot (65532) in the final stage.
RUN mkdir -p bin/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/quorumq /usr/local/bin/quorumq
COPY --from=build --chown=65532:65532 /src/bin/data /data
USER nonroot:nonroot
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/quorumq"]
CMD ["--help"]
