package brokerapi

// ManagerAnnouncement names the write manager.
type ManagerAnnouncement struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	Term     uint64 `json:"term"`
}

// AnnounceReply answers PUT /manager with the write manager the broker records now:
// the announcement itself when Accepted, else the newer one that made it stale.
type AnnounceReply struct {
	Accepted bool                `json:"accepted"`
	Manager  ManagerAnnouncement `json:"manager"`
}
