# Multi-stage build of the same static binary that `make build` produces.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=docker
RUN CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" -o /out/quorumq ./cmd/quorumq
# distroless has no shell to mkdir with: make the data dir here, owned by nonroot (65532).
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/quorumq /usr/local/bin/quorumq
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/quorumq"]
CMD ["--help"]
