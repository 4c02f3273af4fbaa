package config

import (
	"os"
	"time"
)

// EnvHostID names the variable that sets this host's identity; it overrides
// [cluster] host_id (a config file is often shared by every host, the
// environment is each host's own).
const EnvHostID = "SESSIONPLANE_HOST_ID"

// Cluster is [cluster]: how server processes on several hosts sharing one
// database tell each other apart and notice that one has died.
type Cluster struct {
	// HostID names this host in the instances table. Processes with the
	// same host id share a pid space: a dead pid there means a dead
	// process at once. Across host ids only heartbeats count. Default: the
	// hostname ($SESSIONPLANE_HOST_ID overrides the key).
	HostID string `toml:"host_id" json:"host_id"`
	// StaleSeconds is how long a process may go without a heartbeat (every
	// 2 s) before the others take it for dead: its running runs become
	// unknown and its queued runs are adopted.
	StaleSeconds int `toml:"stale_seconds" json:"stale_seconds"`
}

// Cron is [cron]: the scheduler's limits.
type Cron struct {
	// MinEverySeconds is the shortest every: interval a job may have.
	MinEverySeconds int `toml:"min_every_seconds" json:"min_every_seconds"`
}

// Defaults of [cluster] and [cron].
const (
	DefaultStaleSeconds    = 15
	DefaultMinEverySeconds = 10
)

// HostIDFrom resolves this host's identity: getenv(EnvHostID), else
// [cluster] host_id, else the hostname, else "localhost".
func (c Cluster) HostIDFrom(getenv func(string) string) string {
	if getenv != nil {
		if v := getenv(EnvHostID); v != "" {
			return v
		}
	}
	if c.HostID != "" {
		return c.HostID
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// Stale is StaleSeconds as a duration, the default when unset.
func (c Cluster) Stale() time.Duration {
	if c.StaleSeconds <= 0 {
		return DefaultStaleSeconds * time.Second
	}
	return time.Duration(c.StaleSeconds) * time.Second
}

// MinEvery is MinEverySeconds as a duration, the default when unset.
func (c Cron) MinEvery() time.Duration {
	if c.MinEverySeconds <= 0 {
		return DefaultMinEverySeconds * time.Second
	}
	return time.Duration(c.MinEverySeconds) * time.Second
}

func (c *Config) validateCluster(add func(path, format string, args ...any)) {
	if n := len(c.Cluster.HostID); n > 128 {
		add("cluster.host_id", "is %d bytes, over the limit of 128: use a short name for this host (default: the hostname)", n)
	}
	// Two missed heartbeats (2 s each) must not make a live process look dead.
	if v := c.Cluster.StaleSeconds; v < 6 || v > 3600 {
		add("cluster.stale_seconds", "must be between 6 and 3600 (default %d; heartbeats come every 2 s), got %d", DefaultStaleSeconds, v)
	}
	if v := c.Cron.MinEverySeconds; v < 1 || v > 86400 {
		add("cron.min_every_seconds", "must be between 1 and 86400 (default %d), got %d", DefaultMinEverySeconds, v)
	}
}
