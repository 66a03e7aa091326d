package stack

import (
	"net/netip"

	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// sourcePrefix is the unit every per-source limit counts (half-open flows,
// handshake slots and CPU, relayed connections), the same as the
// resumption cache's per-source share: an IPv4 address, or the /64 of an
// IPv6 address, since one subscriber usually owns a whole /64 and can pick
// any address in it for each connection; a per-address limit would not
// bound it.
func sourcePrefix(a netip.Addr) netip.Prefix { return tcpcrypt.SourcePrefix(a) }
