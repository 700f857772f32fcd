// Command etcd is the etcd server built at the version kubernetes itself
// resolves, because distro packages (Debian ships 3.4.23) are older than what
// current kube-apiserver needs for its health checks and consistent reads.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
