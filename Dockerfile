# The operator image, for those who build with Docker. `make image` builds the
# same image without a daemon (hack/image); hack/image/dockerfile_test.go keeps
# the user, entrypoint and labels of the two equal.
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /manager ./cmd

# distroless/static: the CA bundle and the nonroot (65532) user, nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="visio-operator" \
      org.opencontainers.image.source="https://github.com/visio-dev/visio-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
