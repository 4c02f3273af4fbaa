package main

import (
	"runtime/debug"
	"testing"
)

// tuneGC raises the GC target only when the environment sets none: an
// operator's GOGC is kept.
func TestTuneGCKeepsAnOperatorsGOGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	if tuneGC(func(k string) string { return map[string]string{"GOGC": "50"}[k] }) {
		t.Fatal("GOGC set: tuneGC says it changed the target")
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Fatalf("GOGC set: target is %d, want the one in force (100)", now)
	}
	if !tuneGC(func(string) string { return "" }) {
		t.Fatal("GOGC unset: tuneGC says it left the target")
	}
	if now := debug.SetGCPercent(100); now != defaultGCPercent {
		t.Fatalf("GOGC unset: target is %d, want %d", now, defaultGCPercent)
	}
}
