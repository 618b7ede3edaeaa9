package manager

// The brokers' HTTP API as the managers use it: a copy of the JSON shapes in package
// broker (broker/api.go), kept here until that package is committed for others to
// import. Only the fields the managers send or read are listed.

type brokerPeer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
}

type brokerFailure struct {
	Status  string      `json:"status"`
	Message string      `json:"message"`
	Leader  *brokerPeer `json:"leader,omitempty"` // on 421: where writes for the partition go
}

// brokerCreateReplicaRequest: Peers are all replicas of a new partition (this broker
// included), or the current members when this broker joins an existing group.
type brokerCreateReplicaRequest struct {
	Topic     string       `json:"topic"`
	Partition *int         `json:"partition"`
	Peers     []brokerPeer `json:"peers"`
}

type brokerReplicaStatus struct {
	Topic     string     `json:"topic"`
	Partition int        `json:"partition"`
	Leader    brokerPeer `json:"leader"` // zero while there is none
}

type brokerListReplicasReply struct {
	Replicas []brokerReplicaStatus `json:"replicas"`
}

type brokerProduceRequest struct {
	Topic      string   `json:"topic"`
	Partition  *int     `json:"partition"`
	ProducerID string   `json:"producer_id,omitempty"`
	Seq        uint64   `json:"seq,omitempty"`
	Messages   []string `json:"messages,omitempty"`
}

type brokerProduceReply struct {
	Offset uint64 `json:"offset"`
	Count  int    `json:"count"`
}

type brokerRegisterRequest struct {
	Topic      string `json:"topic"`
	Partition  *int   `json:"partition"`
	ConsumerID string `json:"consumer_id"`
}

type brokerConsumeRequest struct {
	Topic      string  `json:"topic"`
	Partition  *int    `json:"partition"`
	ConsumerID string  `json:"consumer_id"`
	Offset     *uint64 `json:"offset,omitempty"`
	Max        int     `json:"max,omitempty"`
}

type brokerConsumeReply struct {
	Offset   uint64   `json:"offset"`
	Messages []string `json:"messages"`
	Next     uint64   `json:"next"`
}

type brokerSizeReply struct {
	Size uint64 `json:"size"`
}
