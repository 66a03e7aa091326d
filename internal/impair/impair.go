// Package impair is a userspace network impairment tool for tcpcryptd's
// end-to-end tests, for a kernel without netem: a Bridge forwards IP frames
// between two interfaces of a router namespace over AF_PACKET sockets and can,
// per direction and changeable at run time, drop, duplicate, delay (with
// jitter, hence reorder), reorder, corrupt TCP payload bytes and strip TCP
// options (e.g. TCP-ENO, kind 69) from SYNs, SYN-ACKs or every segment, fixing
// checksums when it rewrites. A Capture records an interface's frames, and the
// packet functions (ParseFrame, Options, StripOption, CorruptPayload, Streams)
// are pure byte-slice code, tested and fuzzed without root.
package impair
