package managerapi

import (
	"net/http"

	"github.com/quorumq/quorumq/internal/apidoc"
)

// Every route the managers serve, with its types: the source of the OpenAPI document
// they serve at GET /openapi.json. The managers' test fails when a served route is
// missing here or a route here is not served.

var idempotencyKey = apidoc.Param{In: "header", Name: "Idempotency-Key",
	Description: "runs the write once per key: a retry with the same key (within 15 minutes) answers the first outcome, with the header Idempotent-Replayed: true; the same key with another request is refused (422, key_reused)"}

var consumerParams = []apidoc.Param{
	{In: "query", Name: "topic", Required: true},
	{In: "query", Name: "consumer_id", Required: true, Type: "integer", Description: "from POST /consumer/register"},
	{In: "query", Name: "partition", Type: "integer", Description: "only this partition (a consumer registered on one partition reads only it anyway)"},
}

// Routes is the managers' public REST API.
var Routes = []apidoc.Route{
	{Method: "GET", Path: "/healthz", Summary: "This manager's health: its id, whether it is the write manager (Raft leader), the Raft index its state has applied, and a storage fault it is recovering from.", Reply: HealthReply{}},
	{Method: "GET", Path: "/metrics", Summary: "Prometheus metrics: requests by route, the managers' Raft state, replica moves.", Text: "text/plain"},
	{Method: "GET", Path: "/openapi.json", Summary: "This document."},
	{Method: "POST", Path: "/topics", Summary: "Create a topic; zero partitions and replication take the managers' defaults. Admin token.", Params: []apidoc.Param{idempotencyKey}, Body: CreateTopicRequest{}, Reply: TopicReply{}, Status: http.StatusCreated},
	{Method: "GET", Path: "/topics", Summary: "The names of all topics.", Reply: TopicsReply{}},
	{Method: "GET", Path: "/topics/:name", Summary: "A topic's partitions, their replicas and leaders (as recorded, or with live=true as the replicas report).", Params: []apidoc.Param{
		{In: "query", Name: "live", Type: "boolean", Description: "ask the replicas who leads now"}}, Reply: TopicReply{}},
	{Method: "POST", Path: "/topics/:name/partitions", Summary: "Add count partitions to a topic. Admin token.", Params: []apidoc.Param{idempotencyKey}, Body: AddPartitionsRequest{}, Reply: TopicReply{}},
	{Method: "GET", Path: "/topics/:name/partitions/:partition/messages", Summary: "Read up to max messages from offset of one partition, from any replica, moving no consumer (replay, peek). A replica that is behind may return fewer.", Params: []apidoc.Param{
		{In: "query", Name: "offset", Type: "integer", Description: "first offset (default 0)"},
		{In: "query", Name: "max", Type: "integer", Description: "messages at most (default 1, at most 1000)"}}, Reply: MessagesReply{}},
	{Method: "POST", Path: "/producer/register", Summary: "Register a producer of a topic; its id numbers its batches (seq) so that retries are stored once.", Params: []apidoc.Param{idempotencyKey}, Body: RegisterRequest{}, Reply: ProducerReply{}},
	{Method: "POST", Path: "/consumer/register", Summary: "Register a consumer of a topic (or of one partition); it starts at offset 0.", Params: []apidoc.Param{idempotencyKey}, Body: RegisterRequest{}, Reply: ConsumerReply{}},
	{Method: "POST", Path: "/producer/produce", Summary: "Append one message or a batch to a topic: to the partition given, else by key hash, else round robin. seq makes a retry idempotent.", Body: ProduceRequest{}, Reply: ProduceReply{}},
	{Method: "GET", Path: "/consumer/consume", Summary: "Take the consumer's next message (or up to max) and advance it; 404 with code no_message when none is left. The seed's path; the same parameters may come as a JSON body.", Params: append(consumerParams[:len(consumerParams):len(consumerParams)],
		apidoc.Param{In: "query", Name: "offset", Type: "integer", Description: "the offset the consumer expects to read from: a retry after a lost reply names it again and gets the same messages"},
		apidoc.Param{In: "query", Name: "seq", Type: "integer", Description: "instead of offset: the consumer's consume number (1, 2, ...), the same on a retry"},
		apidoc.Param{In: "query", Name: "max", Type: "integer", Description: "messages at most (default 1, at most 10000); above 1 the reply has messages"}), Reply: ConsumeReply{}},
	{Method: "GET", Path: "/size", Summary: "How many messages are left for a consumer.", Params: consumerParams, Reply: SizeReply{}},
	{Method: "GET", Path: "/brokers", Summary: "The brokers the managers know, their state, and the replicas and leaders each holds.", Reply: BrokersReply{}},
	{Method: "DELETE", Path: "/brokers/:id", Summary: "Decommission a broker: its replicas move to other brokers, then it is released. Admin token.", Params: []apidoc.Param{idempotencyKey}, Reply: MessageReply{}, Status: http.StatusAccepted},
	{Method: "POST", Path: "/brokers/:id/cancel-decommission", Summary: "Stop decommissioning a broker that is alive: it keeps the replicas it still holds. Admin token.", Reply: MessageReply{}},
	{Method: "GET", Path: "/managers", Summary: "The managers' Raft group and which member is the write manager.", Reply: ManagersReply{}},
}

// OpenAPI is the managers' OpenAPI 3 document (JSON).
var OpenAPI = apidoc.Lazy(apidoc.Info{
	Title:   "quorumq managers",
	Version: "1",
	Description: "The public REST API of the quorumq managers. Any manager answers; writes on a manager that is " +
		"not the write manager are forwarded to it. Every reply is JSON: \"status\":\"success\" with the fields below, " +
		"or \"status\":\"failure\" with \"message\", a machine-readable \"code\" and, for writes, \"outcome\" " +
		"(not_applied, or unknown: retry with the same Idempotency-Key or seq).",
	Failure: Failure{},
}, Routes)
