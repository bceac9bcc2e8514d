package main

// What the image is made of. The Dockerfile at the root of the repository
// builds the same image with Docker; dockerfile_test.go keeps the two equal.
const (
	// binaryPath is where the manager binary sits, and the entrypoint.
	binaryPath = "/manager"
	// user is the numeric user and group the manager runs as: the "nonroot"
	// user of the distroless images, so that Kubernetes' runAsNonRoot can
	// check it without an /etc/passwd lookup.
	user = "65532:65532"
	// caBundlePath is where Go's crypto/x509 looks first on Linux.
	caBundlePath = "/etc/ssl/certs/ca-certificates.crt"
	// title and source are the OCI labels that do not change from build to build.
	title  = "visio-operator"
	source = "https://github.com/visio-dev/visio-operator"
)

// passwd and group name the non-root user, for tools that look it up.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// Label keys (https://github.com/opencontainers/image-spec/blob/main/annotations.md).
const (
	labelTitle    = "org.opencontainers.image.title"
	labelSource   = "org.opencontainers.image.source"
	labelVersion  = "org.opencontainers.image.version"
	labelRevision = "org.opencontainers.image.revision"
	labelCreated  = "org.opencontainers.image.created"
)
