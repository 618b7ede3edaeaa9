package consul

import "time"

// SetKeepEvery shortens how often b checks that the agent still has its instances.
func SetKeepEvery(b *Backend, d time.Duration) { b.keepEvery = d }
