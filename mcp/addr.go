package mcp

import (
	"fmt"
	"net"
)

// CheckHTTPAddr validates the syntax of an --http address without binding
// it, so main can refuse a malformed flag before anything is opened:
// host:port with a valid port. Which hosts may be served (loopback, or any
// with [[mcp.http.tokens]]) is ServeHTTP's decision, made with the config.
func CheckHTTPAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: %v (use host:port, e.g. 127.0.0.1:8765)", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("--http %q: port %q: %v (use host:port, e.g. 127.0.0.1:8765)", addr, port, err)
	}
	return nil
}
