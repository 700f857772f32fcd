// Command kube-controller-manager runs the built-in controllers (garbage
// collection, Deployment -> ReplicaSet -> Pod, namespace deletion) against the
// test API server. Without a kubelet, Pods it creates stay Pending.
package main

import (
	"os"

	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
