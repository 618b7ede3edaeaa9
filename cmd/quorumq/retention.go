package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/quorumq/quorumq/clientlib"
)

// retentionFlags are `topic create`'s --retention-ms and --retention-bytes: a number
// (milliseconds, bytes) or, for people, a duration (90s, 24h, 7d) and a size (512MiB,
// 1GB).
type retentionFlags struct{ ms, bytes string }

func (f *retentionFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.ms, "retention-ms", "", "delete each partition's messages older than this: milliseconds, or a duration such as 90s, 24h, 7d (default: kept forever)")
	fs.StringVar(&f.bytes, "retention-bytes", "", "delete each partition's oldest messages past this size: bytes, or a size such as 512MiB, 1GB (default: no limit)")
}

func (f *retentionFlags) parse() (clientlib.Retention, error) {
	var r clientlib.Retention
	if f.ms != "" {
		d, err := parseRetentionTime(f.ms)
		if err != nil {
			return r, fmt.Errorf("--retention-ms %q: %w", f.ms, err)
		}
		r.Time = d
	}
	if f.bytes != "" {
		n, err := parseSize(f.bytes)
		if err != nil {
			return r, fmt.Errorf("--retention-bytes %q: %w", f.bytes, err)
		}
		r.Bytes = n
	}
	return r, nil
}

// parseRetentionTime reads milliseconds, a Go duration, or whole days ("7d").
func parseRetentionTime(s string) (time.Duration, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 {
		return time.Duration(ms) * time.Millisecond, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseInt(days, 10, 64); err == nil && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("not a number of milliseconds or a duration (90s, 24h, 7d)")
	}
	return d, nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// parseSize reads bytes, with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB, B).
func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a size in bytes (e.g. 1048576, 512MiB, 1GB)")
	}
	return n * mult, nil
}

// retentionText describes a topic's retention for `topic describe`.
func retentionText(r clientlib.Retention) string {
	var parts []string
	if r.Time > 0 {
		parts = append(parts, fmt.Sprintf("retention %v", r.Time))
	}
	if r.Bytes > 0 {
		parts = append(parts, fmt.Sprintf("retention %d bytes per partition", r.Bytes))
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}
