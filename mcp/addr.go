package mcp

import (
	"fmt"
	"net"
)

// CheckHTTPAddr validates an --http address without binding it, so main
// can refuse a bad flag before anything is opened: host:port, loopback
// only.
func CheckHTTPAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: %v (use host:port, e.g. 127.0.0.1:8765)", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--http %q: only loopback addresses are served (127.0.0.1, [::1] or localhost)", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("--http %q: port %q: %v (use a number, e.g. 127.0.0.1:8765)", addr, port, err)
	}
	return nil
}
