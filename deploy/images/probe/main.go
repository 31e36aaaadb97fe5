// Command todo-probe is the gateway image's HEALTHCHECK: it exits 0 when an HTTP GET of its URL answers 2xx within
// the timeout, and 1 otherwise (the image's base has no shell, curl or wget). Kubernetes probes the gateway's
// /healthz and /readyz itself; this is for container engines.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	url := "http://127.0.0.1:8080/healthz"
	if len(os.Args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: todo-probe [url]")
		os.Exit(2)
	}
	if len(os.Args) == 2 {
		url = os.Args[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "todo-probe: %v\n", err)
		os.Exit(2)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "todo-probe: %v\n", err)
		os.Exit(1)
	}
	_ = resp.Body.Close()
	fmt.Println(resp.Status)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		os.Exit(1)
	}
}
