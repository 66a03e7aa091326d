package control

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// DefaultTimeout bounds one Client request unless Client.Timeout says
// otherwise.
const DefaultTimeout = 5 * time.Second

// Errors a Client returns for API answers callers branch on; the error
// itself is an *APIError.
var (
	ErrNotFound     = errors.New("control: connection not found")
	ErrNotEncrypted = errors.New("control: connection not encrypted")
	ErrUnavailable  = errors.New("control: daemon unavailable")
)

// APIError is an error answer of the control API.
type APIError struct {
	Status  int    // HTTP status
	Code    string // CodeNotFound, CodeNotEncrypted, ...
	Message string
	Reason  string // fallback reason, for CodeNotEncrypted
}

func (e *APIError) Error() string {
	return fmt.Sprintf("tcpcryptd: %s", e.Message)
}

// Is maps codes to ErrNotFound, ErrNotEncrypted and ErrUnavailable.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == CodeNotFound
	case ErrNotEncrypted:
		return e.Code == CodeNotEncrypted
	case ErrUnavailable:
		return e.Code == CodeUnavailable
	}
	return false
}

// Client talks to a daemon's control socket. Safe for concurrent use.
type Client struct {
	path string
	hc   *http.Client
	// Timeout bounds each request (0: DefaultTimeout). Set it before use.
	Timeout time.Duration
}

// Dial returns a client for the daemon listening on socketPath, after
// checking that something accepts connections there, so that a daemon
// that is not running is reported at once.
func Dial(socketPath string) (*Client, error) {
	c, err := net.DialTimeout("unix", socketPath, DefaultTimeout)
	if err != nil {
		return nil, fmt.Errorf("control: cannot reach tcpcryptd at %s (is it running? is the socket path right?): %w", socketPath, err)
	}
	c.Close()
	return NewClient(socketPath), nil
}

// NewClient returns a client for socketPath without contacting it.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{path: socketPath, hc: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Health returns the daemon's health.
func (c *Client) Health() (Health, error) {
	var h Health
	err := c.get(PathHealth, nil, &h)
	return h, err
}

// Connections returns the connections the daemon relays.
func (c *Client) Connections() ([]Connection, error) {
	var l ConnectionList
	err := c.get(PathConnections, nil, &l)
	return l.Connections, err
}

// Lookup returns the connection with the given plain-leg 4-tuple (see the
// package comment); the error matches ErrNotFound or ErrNotEncrypted when
// there is no such connection or it has no session ID.
func (c *Client) Lookup(local, remote netip.AddrPort) (Connection, error) {
	var r SessionIDResponse
	q := url.Values{"local": {local.String()}, "remote": {remote.String()}}
	err := c.get(PathSessionID, q, &r)
	return r.Connection, err
}

// SessionID returns the tcpcrypt session ID of the connection whose socket
// has local and remote as its own addresses, as the application sees
// them. The error matches ErrNotFound or ErrNotEncrypted (an *APIError)
// when the daemon knows no such connection or it is plain TCP.
func (c *Client) SessionID(local, remote netip.AddrPort) ([]byte, error) {
	var r SessionIDResponse
	q := url.Values{"local": {local.String()}, "remote": {remote.String()}}
	if err := c.get(PathSessionID, q, &r); err != nil {
		return nil, err
	}
	id, err := hex.DecodeString(r.SessionID)
	if err != nil || len(id) == 0 {
		return nil, fmt.Errorf("control: daemon sent a bad session ID %q", r.SessionID)
	}
	return id, nil
}

// Metrics returns the Prometheus text exposition.
func (c *Client) Metrics() ([]byte, error) {
	resp, err := c.do(PathMetrics, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

func (c *Client) do(path string, q url.Values) (*http.Response, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	u := url.URL{Scheme: "http", Host: "tcpcryptd", Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("control: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("control: request %s on %s: %w", path, c.path, err)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

func (c *Client) get(path string, q url.Values, v any) error {
	resp, err := c.do(path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("control: decode %s: %w", path, err)
	}
	return nil
}

func decodeError(resp *http.Response) error {
	var b errorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(raw, &b); err != nil || b.Error == "" {
		return &APIError{Status: resp.StatusCode, Code: fmt.Sprintf("http-%d", resp.StatusCode), Message: fmt.Sprintf("HTTP %s", resp.Status)}
	}
	return &APIError{Status: resp.StatusCode, Code: b.Code, Message: b.Error, Reason: b.Reason}
}

// cancelBody cancels the request's context once the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
