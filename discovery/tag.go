package discovery

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// holdRetry is how soon a failed tag change is tried again while nothing else changes.
const holdRetry = time.Second

// HoldTag puts tag on instance id of service, and on no other instance, until ctx ends;
// then it takes the tag off id before returning. The leader tag is what people and tools
// read to find the write manager, so two tagged instances (a SIGKILLed leader keeps its
// registration, and its tag, until the backend drops it) or a dead tagged one would send
// them to the wrong place. Others lose the tag before id gets it, so the backend never
// shows two at once because of this holder; and a stale tag that reappears later (an old
// leader's process re-registering what it remembered) is removed as soon as it shows.
func HoldTag(ctx context.Context, b Backend, service, id, tag string, log *slog.Logger) {
	defer func() {
		// ctx is done: the removal gets a short budget of its own.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := b.SetTag(rctx, service, id, tag, false); err != nil && !errors.Is(err, ErrNotFound) {
			log.Warn("remove tag", "service", service, "tag", tag, "err", err)
		}
	}()
	updates, err := b.Watch(ctx, service)
	if err != nil {
		log.Warn("watch for tag", "service", service, "err", err)
		return
	}
	var members []Member
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ms, ok := <-updates:
			if !ok {
				return
			}
			members = ms
		case <-retry.C:
		}
		if members == nil {
			continue
		}
		if err := placeTag(ctx, b, members, service, id, tag); err != nil && ctx.Err() == nil {
			log.Warn("set tag", "service", service, "tag", tag, "err", err)
			retry.Reset(holdRetry)
		}
	}
}

// placeTag removes tag from every member but id, then adds it to id.
func placeTag(ctx context.Context, b Backend, members []Member, service, id, tag string) error {
	registered := false
	for _, m := range members {
		if m.ID == id {
			registered = true
			continue
		}
		if m.HasTag(tag) {
			if err := b.SetTag(ctx, service, m.ID, tag, false); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}
	if !registered {
		// Not (yet) registered: the update that shows it registered tags it.
		return nil
	}
	for _, m := range members {
		if m.ID == id && m.HasTag(tag) {
			return nil
		}
	}
	return b.SetTag(ctx, service, id, tag, true)
}
