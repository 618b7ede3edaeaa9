package manager

import (
	"testing"
	"time"
)

// TestAnnouncesToBrokers: the write manager announces itself to every broker it knows,
// and to a broker that registers later.
func TestAnnouncesToBrokers(t *testing.T) {
	_, fb, d := startWithBrokers(t, "announce", "b1", "b2")
	fb.start(t, d, "b3")
	start := time.Now()
	eventually(t, 15*time.Second, "every broker names m1", func() bool {
		for _, id := range []string{"b1", "b2", "b3"} {
			if a := fb.writeManager(id); a.ID != "m1" || a.Term == 0 || a.HTTPAddr == "" {
				return false
			}
		}
		return true
	})
	// Within a second when b3's registration is what triggered it, up to ensureEvery
	// when only the periodic round reached it.
	t.Logf("the late broker b3 names m1 after %v", time.Since(start).Round(time.Millisecond))
}
