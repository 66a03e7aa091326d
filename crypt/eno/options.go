package eno

// Options scans a TCP options area (the bytes after the 20-byte fixed TCP
// header) and returns every kind-69 option found, as whole option bytes
// (kind, length, contents) aliasing tcpOpts, and whether a legacy ENO option
// (kind 253 with ExID 0x454E, RFC 8547 §11) was seen.
//
// EOL ends the scan; NOP is skipped; every other option needs a length byte
// of at least 2 that stays inside the area. The error, a *ParseError, is
// non-nil only when the area itself is malformed (or longer than 40 bytes);
// the options found before the fault are still returned. Contents of the
// ENO options are not checked here: ParseSYNForm does that for SYN segments,
// and non-SYN contents are ignored (§4.1).
func Options(tcpOpts []byte) (enos [][]byte, legacy bool, err error) {
	if len(tcpOpts) > maxAreaLen {
		return nil, false, &ParseError{Reason: ParseAreaTooLong, Offset: maxAreaLen}
	}
	for i := 0; i < len(tcpOpts); {
		switch tcpOpts[i] {
		case kindEOL:
			return enos, legacy, nil
		case kindNOP:
			i++
			continue
		}
		if i+1 >= len(tcpOpts) {
			return enos, legacy, &ParseError{Reason: ParseAreaTruncated, Offset: i}
		}
		n := int(tcpOpts[i+1])
		if n < 2 {
			return enos, legacy, &ParseError{Reason: ParseAreaBadLength, Offset: i + 1}
		}
		if i+n > len(tcpOpts) {
			return enos, legacy, &ParseError{Reason: ParseAreaPastEnd, Offset: i + 1}
		}
		opt := tcpOpts[i : i+n : i+n]
		switch {
		case opt[0] == Kind:
			enos = append(enos, opt)
		case opt[0] == kindExp && n >= legacyMinLn && uint16(opt[2])<<8|uint16(opt[3]) == legacyExID:
			legacy = true
		}
		i += n
	}
	return enos, legacy, nil
}
