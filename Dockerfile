# syntax=docker/dockerfile:1
#
# docker build --build-arg VERSION=$(git describe --always --dirty) -t botfleet .   (= make docker)
# The image runs one botfleet command: serve (default), worker, migrate, emulator, doctor, ...
# It is distroless (no shell, no curl): container health checks run `/botfleet healthcheck`.
# `/botfleet --version` prints VERSION (the .git directory is not in the build context).

# GO_VERSION follows go.mod's go directive (cmd/botfleet's deploy test checks it).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly

# Dependencies first: this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/botfleet ./cmd/botfleet

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/botfleet /botfleet
# nonroot (65532) as numbers, so that Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/botfleet"]
CMD ["serve"]
