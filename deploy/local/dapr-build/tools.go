//go:build tools

// Package tools names the programs this wrapper module builds. The build tag
// keeps it out of every normal build; it only tells `go mod tidy` that the
// requirement on github.com/dapr/dapr is used.
package tools

import (
	_ "github.com/dapr/dapr/cmd/daprd"
	_ "github.com/dapr/dapr/cmd/scheduler"
)
