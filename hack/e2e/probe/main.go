// Command probe is the network probe image of the e2e node: "probe" alone
// waits until it is told to stop (the Pod's main process); "probe dial
// HOST:PORT" (run with kubectl exec) opens a TCP connection and exits 0 if
// it was accepted, 1 if it was refused or timed out, so that the tests can
// see what a NetworkPolicy lets through.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "dial" {
		c, err := net.DialTimeout("tcp", os.Args[2], 3*time.Second)
		if err != nil {
			fmt.Println("closed:", err)
			os.Exit(1)
		}
		_ = c.Close()
		fmt.Println("open")
		return
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
