// Command etcd is a thin wrapper around etcdmain so the server can be built
// from a pinned module version.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
