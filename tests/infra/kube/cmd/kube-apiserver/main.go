// Command kube-apiserver is the upstream API server, linked from the
// k8s.io/kubernetes module so tests get a real server without containers.
package main

import (
	"os"

	// Registers the JSON log format so `--logging-format=json` stays available.
	_ "k8s.io/component-base/logs/json/register"
	// Upstream wires client-go and build-version metrics in via these side
	// effects; keep them so /metrics looks like a real cluster's.
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
