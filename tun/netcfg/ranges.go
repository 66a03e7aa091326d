package netcfg

import (
	"net/netip"
	"slices"
)

// addrRange is the addresses Lo..Hi, both included, of one family.
type addrRange struct{ Lo, Hi netip.Addr }

// prefixRange is the range a prefix covers.
func prefixRange(p netip.Prefix) addrRange {
	p = p.Masked()
	lo := p.Addr()
	hi := lo.AsSlice()
	for i := p.Bits(); i < len(hi)*8; i++ {
		hi[i/8] |= 0x80 >> (i % 8)
	}
	h, _ := netip.AddrFromSlice(hi)
	return addrRange{lo, h}
}

// mergeRanges sorts rs and joins those that overlap or touch.
func mergeRanges(rs []addrRange) []addrRange {
	slices.SortFunc(rs, func(a, b addrRange) int { return a.Lo.Compare(b.Lo) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next := last.Hi.Next(); !next.IsValid() || r.Lo.Compare(next) <= 0 {
				if r.Hi.Compare(last.Hi) > 0 {
					last.Hi = r.Hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// subtractRanges returns the addresses of in that are in no range of out;
// both must be merged (sorted, disjoint).
func subtractRanges(in, out []addrRange) []addrRange {
	var res []addrRange
	for _, r := range in {
		cur := r
		ok := true
		for _, x := range out {
			if !ok || x.Hi.Less(cur.Lo) {
				continue
			}
			if cur.Hi.Less(x.Lo) {
				break
			}
			// x overlaps cur: keep what lies before it, go on after it.
			if cur.Lo.Less(x.Lo) {
				res = append(res, addrRange{cur.Lo, x.Lo.Prev()})
			}
			if next := x.Hi.Next(); next.IsValid() && !cur.Hi.Less(next) {
				cur.Lo = next
			} else {
				ok = false
			}
		}
		if ok {
			res = append(res, cur)
		}
	}
	return res
}

// autoExclude are destinations never captured, whatever the include list
// says: loopback, unspecified ("this network"), link-local, multicast,
// limited broadcast and IPv4-mapped addresses. The device's own prefixes
// are added per Spec.
var autoExclude = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // RFC 1122 §3.2.1.3 "this network"
	netip.MustParsePrefix("127.0.0.0/8"),        // loopback
	netip.MustParsePrefix("169.254.0.0/16"),     // link-local (RFC 3927)
	netip.MustParsePrefix("224.0.0.0/4"),        // multicast
	netip.MustParsePrefix("255.255.255.255/32"), // limited broadcast
	netip.MustParsePrefix("::/128"),             // unspecified
	netip.MustParsePrefix("::1/128"),            // loopback
	netip.MustParsePrefix("::ffff:0:0/96"),      // IPv4-mapped (RFC 4291 §2.5.5.2)
	netip.MustParsePrefix("fe80::/10"),          // link-local
	netip.MustParsePrefix("ff00::/8"),           // multicast
}

// AutoExclude returns the prefixes never captured for a device with the
// given prefixes (either may be zero): autoExclude plus the device's own.
func AutoExclude(kernelV4, kernelV6 netip.Prefix) []netip.Prefix {
	out := slices.Clone(autoExclude)
	for _, p := range []netip.Prefix{kernelV4, kernelV6} {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	return out
}

// captureRanges is what the host's own connections are captured for, per
// family: include minus exclude (which the caller extends with
// AutoExclude).
func captureRanges(include, exclude []netip.Prefix, v6 bool) []addrRange {
	conv := func(ps []netip.Prefix) []addrRange {
		var rs []addrRange
		for _, p := range ps {
			if p.IsValid() && p.Addr().Is6() == v6 {
				rs = append(rs, prefixRange(p))
			}
		}
		return mergeRanges(rs)
	}
	return subtractRanges(conv(include), conv(exclude))
}

// CapturedBy reports whether Desired marks the host's own connections to a
// for a spec with these lists: a is in include and not in exclude or in
// AutoExclude(kernelV4, kernelV6). (check-config uses it.)
func CapturedBy(include, exclude []netip.Prefix, kernelV4, kernelV6 netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	ex := append(slices.Clone(exclude), AutoExclude(kernelV4, kernelV6)...)
	for _, r := range captureRanges(include, ex, a.Is6()) {
		if !a.Less(r.Lo) && !r.Hi.Less(a) {
			return true
		}
	}
	return false
}
