package brokerbench

import (
	"context"
	"fmt"
	"time"
)

// Partitions measures many partitions on three brokers it starts: the time until all
// are led after creation, idle CPU and RSS per broker, the time until all are led after
// a cold restart of every broker, and after one broker is SIGKILLed.
func Partitions(ctx context.Context, cfg Config, idle time.Duration) error {
	e, err := setupIdle(ctx, cfg, "partitions")
	if err != nil {
		return err
	}
	defer e.close()
	e.idle(idle)

	for _, p := range e.procs {
		p.kill()
	}
	start := time.Now()
	for _, p := range e.procs {
		if err := p.start(ctx, cfg.Binary); err != nil {
			return err
		}
	}
	if err := e.waitAllLed(ctx); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Out, "cold restart of all 3 brokers (SIGKILL, start): all %d partitions led after %v\n",
		cfg.Partitions, time.Since(start).Round(time.Millisecond))
	e.idle(idle)

	victim := e.procs[0]
	victim.kill()
	start = time.Now()
	if err := e.waitAllLed(ctx); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Out, "SIGKILL of %s: all %d partitions led again after %v\n",
		victim.peer.ID, cfg.Partitions, time.Since(start).Round(time.Millisecond))
	return nil
}

// Idle creates cfg.Partitions partitions (RF 3, spread over three brokers it starts),
// waits until all are led, and prints each broker's CPU use (from /proc) over d while
// nothing is produced or consumed, and its RSS.
func Idle(ctx context.Context, cfg Config, d time.Duration) error {
	cfg.Duration = d // the profiles' length
	e, err := setupIdle(ctx, cfg, "idle")
	if err != nil {
		return err
	}
	defer e.close()
	profiled := e.profile(ctx)
	e.idle(d)
	return profiled()
}

// setupIdle starts three brokers with cfg.Partitions partitions, all led.
func setupIdle(ctx context.Context, cfg Config, bench string) (*env, error) {
	if len(cfg.Brokers) > 0 {
		return nil, fmt.Errorf("brokerbench: the %s bench starts its own brokers (no --brokers)", bench)
	}
	cfg.Clients, cfg.Size, cfg.Batch = 1, 1, 1
	return setup(ctx, cfg)
}

// idle prints each broker's CPU use over d and its RSS.
func (e *env) idle(d time.Duration) {
	before := make([]usage, len(e.procs))
	for i, p := range e.procs {
		before[i], _ = readUsage(p.cmd.Process.Pid)
	}
	time.Sleep(d)
	for i, p := range e.procs {
		u, err := readUsage(p.cmd.Process.Pid)
		if err != nil {
			continue
		}
		fmt.Fprintf(e.cfg.Out, "  %s idle over %v: CPU %.1f%% of a core, RSS %.0f MiB (anonymous %.0f MiB)\n",
			p.peer.ID, d, 100*(u.cpu-before[i].cpu).Seconds()/d.Seconds(), mib(u.rss), mib(u.anon))
	}
}
