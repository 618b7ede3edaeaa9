package broker

import (
	"log/slog"
	"net/http"
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

// The write manager announces itself to every broker when it takes over and when a
// broker comes (back) up, so that a broker, and whoever asks it, knows which manager
// writes without asking Consul:
//
//	PUT /manager   ManagerAnnouncement → AnnounceReply
//	GET /manager   → ManagerAnnouncement (404 until a write manager has announced itself)
//
// Term is the managers' Raft term in which the announcer leads. Raft elects at most one
// leader per term and terms only grow, so the broker keeps the announcement with the
// highest term: a deposed write manager whose announcement arrives late (a retry, a
// slow network) cannot overwrite its successor. Within one term the first announcer
// stays; its repeats may update its address.

// writeManager is the broker's record of the write manager.
type writeManager struct {
	log *slog.Logger

	mu  sync.Mutex
	cur brokerapi.ManagerAnnouncement // zero until the first announcement
}

// offer applies the term rule and returns the record afterwards and whether a was taken.
func (w *writeManager) offer(a brokerapi.ManagerAnnouncement) (brokerapi.ManagerAnnouncement, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a.Term < w.cur.Term || a.Term == w.cur.Term && a.ID != w.cur.ID {
		return w.cur, false
	}
	if a.ID != w.cur.ID || a.Term != w.cur.Term {
		w.log.Info("write manager is now "+a.ID, "term", a.Term, "http_addr", a.HTTPAddr)
	}
	w.cur = a
	return a, true
}

func (w *writeManager) get() brokerapi.ManagerAnnouncement {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// mountManager serves PUT and GET /manager.
func (b *Broker) mountManager(app *fiber.App, admin, anyRole fiber.Handler) {
	w := &writeManager{log: b.log}
	app.Put("/manager", admin, func(c *fiber.Ctx) error {
		var a brokerapi.ManagerAnnouncement
		if err := parseBody(c, &a); err != nil {
			return err
		}
		if a.ID == "" || a.HTTPAddr == "" || a.Term == 0 {
			return failf(http.StatusBadRequest, `an announcement needs "id", "http_addr" and "term" (the managers' Raft term, at least 1)`)
		}
		cur, ok := w.offer(a)
		return success(c, brokerapi.AnnounceReply{Accepted: ok, Manager: cur})
	})
	app.Get("/manager", anyRole, func(c *fiber.Ctx) error {
		cur := w.get()
		if cur.ID == "" {
			return failf(http.StatusNotFound, "no write manager has announced itself to broker %s yet", b.cfg.ID)
		}
		return success(c, cur)
	})
}
