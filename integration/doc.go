// Package integration holds tcpcryptd's end-to-end tests: real daemons (the
// built binary) in network namespaces laptop -- router -- server (see package
// topo for the drawing), real kernel-socket clients and servers, a capture on
// the router, and the impair bridge for loss, duplication, delay, reordering,
// tampering and option stripping.
//
// The tests need root; without it they skip, except under CI=true, where a
// skip would hide them and they fail instead. Run them with
//
//	go test ./integration/
//
// Everything they create lives in namespaces named tcpcit-<pid>-..., removed
// when each test ends, also when it fails.
package integration
