package main

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"time"

	"github.com/spf13/pflag"
)

func pprofFlag(f *pflag.FlagSet, addr *string) {
	f.StringVar(addr, "pprof", "", "serve Go profiles (net/http/pprof, no authentication: keep it on loopback) on this host:port")
}

// servePprof serves the Go profiles on addr in the background; "" serves nothing.
func servePprof(addr string, log *slog.Logger) {
	if addr == "" {
		return
	}
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second}
	go func() { log.Warn("pprof server stopped", "error", srv.ListenAndServe()) }()
}
