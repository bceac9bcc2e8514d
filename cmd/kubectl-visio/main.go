// Command kubectl-visio is the kubectl plugin `kubectl visio`: put it on the
// PATH and run `kubectl visio --help`.
package main

import (
	"context"
	"os"
	"os/signal"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	// The zone database, so that time zones are checked the same on every OS.
	_ "time/tzdata"

	"visio.dev/operator/internal/visioctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	code := visioctl.Run(ctx, os.Args[1:], streams, genericclioptions.NewConfigFlags(true))
	stop()
	os.Exit(code)
}
