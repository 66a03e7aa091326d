package tcpcrypt

import (
	"encoding/hex"
)

// Key log format (Config.KeyLog), one line per secret, lowercase hex, in the
// spirit of the NSS key log that crypto/tls writes to KeyLogWriter:
//
//	TCPCRYPT_ES <session-id> <ES>      fresh sessions: the ephemeral secret
//	TCPCRYPT_SS <session-id> <ss[i]>   every session: its session secret
//
// The session ID (33 bytes, RFC 8548 §3.4) identifies the connection in a
// capture; ss[i] alone lets a decoder derive every master and traffic key
// of the connection (with sn[i], which a resumed session carries in its
// SYN options). Each line is written with a single Write call.
const (
	keyLogES = "TCPCRYPT_ES"
	keyLogSS = "TCPCRYPT_SS"
)

// writeKeyLog writes one key log line, if a key log is configured. Errors
// writing the log are ignored: the log is a debugging aid and must not
// break connections.
func (c *Config) writeKeyLog(label string, sessionID, secret []byte) {
	if c.KeyLog == nil {
		return
	}
	line := make([]byte, 0, len(label)+2+2*(len(sessionID)+len(secret))+1)
	line = append(line, label...)
	line = append(line, ' ')
	line = hex.AppendEncode(line, sessionID)
	line = append(line, ' ')
	line = hex.AppendEncode(line, secret)
	line = append(line, '\n')
	s := c.state()
	s.keyLogMu.Lock()
	_, _ = c.KeyLog.Write(line)
	s.keyLogMu.Unlock()
	clear(line)
}
