package manager

// The brokers' HTTP API as the managers use it. These mirror package broker's request
// and reply types; they are assumed here until that package publishes them.

type brokerFailure struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Leader  string `json:"leader,omitempty"` // the partition leader, when the broker is not it
}

type brokerPeer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

type brokerCreateReplicaRequest struct {
	Group     string       `json:"group"`
	Topic     string       `json:"topic"`
	Partition int          `json:"partition"`
	Peers     []brokerPeer `json:"peers"`
	Join      bool         `json:"join"`
}

type brokerReplicasReply struct {
	Groups []string `json:"groups"`
}

type brokerProduceRequest struct {
	Producer string   `json:"producer"`
	Seq      *uint64  `json:"seq,omitempty"`
	Messages []string `json:"messages"`
}

type brokerProduceReply struct {
	Offset uint64 `json:"offset"`
}

type brokerConsumeRequest struct {
	Consumer string  `json:"consumer"`
	Expected *uint64 `json:"expected,omitempty"`
	Max      int     `json:"max"`
}

type brokerConsumeReply struct {
	Messages []string `json:"messages"`
	From     uint64   `json:"from"`
	Next     uint64   `json:"next"`
}

type brokerSizeReply struct {
	Size uint64 `json:"size"`
}
