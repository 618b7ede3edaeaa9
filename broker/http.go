package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/broker/internal/store"
	"github.com/quorumq/quorumq/broker/partition"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/httpjson"
	"github.com/quorumq/quorumq/internal/secure"
)

// apiError is a failure with its HTTP code; handlers return it and errorHandler writes it.
type apiError struct {
	code   int
	msg    string
	leader *brokerapi.Peer
	reason string  // brokerapi.Failure.Code
	offset *uint64 // brokerapi.Failure.Offset
}

func (e *apiError) Error() string { return e.msg }

func failf(code int, format string, args ...any) error {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// maxMaxConsume bounds one batch consume; maxConsumeBytes bounds its reply.
const (
	maxMaxConsume   = 10000
	maxConsumeBytes = 4 << 20
	requestTimeout  = 10 * time.Second
)

func (b *Broker) newApp() *fiber.App {
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ErrorHandler:          errorHandler,
		JSONEncoder:           httpjson.Line,
		// One request is at most one Raft entry (replica.produce answers 413
		// past maxEntryBytes); JSON's quoting may double a batch's bytes.
		BodyLimit:   2 * maxEntryBytes,
		ReadTimeout: b.cfg.HTTPReadTimeout,
	})
	b.mountMetrics(app)
	// Managers and brokers come in by their cluster certificate; the SDK with a token.
	// Replica management is the managers' (admin).
	admin, anyRole := b.auth.Require(secure.RoleAdmin, nil), b.auth.Require("", nil)
	app.Get("/healthz", b.healthz)
	app.Post("/replicas", admin, b.createReplica)
	app.Get("/replicas", anyRole, b.listReplicas)
	app.Get("/replicas/:topic/:partition", anyRole, b.replicaStatus)
	app.Delete("/replicas/:topic/:partition", admin, b.deleteReplicaHandler)
	app.Get("/replicas/:topic/:partition/messages", b.auth.Require(secure.RoleConsume, secure.TopicParam("topic")), b.readAt)
	app.Post("/replicas/:topic/:partition/members", admin, b.addMember)
	app.Delete("/replicas/:topic/:partition/members/:id", admin, b.removeMember)
	app.Post("/replicas/:topic/:partition/leader", admin, b.transferLeader)
	app.Post("/produce", b.auth.Require(secure.RoleProduce, secure.TopicQueryOrBody), b.produce)
	app.Post("/consumers", b.auth.Require(secure.RoleConsume, secure.TopicBody), b.registerConsumer)
	app.Post("/consume", b.auth.Require(secure.RoleConsume, secure.TopicBody), b.consume)
	app.Get("/size", b.auth.Require(secure.RoleConsume, secure.TopicQuery), b.size)
	b.mountManager(app, admin, anyRole)
	return app
}

// errorHandler maps every error to the JSON failure body and a fitting code.
func errorHandler(c *fiber.Ctx, err error) error {
	f := brokerapi.Failure{Failure: httpjson.Failure{Status: "failure", Message: err.Error()}}
	code := http.StatusInternalServerError
	var ae *apiError
	var fe *fiber.Error
	var ge *partition.GoneError
	switch {
	case errors.As(err, &ae):
		code, f.Leader, f.Code, f.Offset = ae.code, ae.leader, ae.reason, ae.offset
	case errors.As(err, &fe):
		code = fe.Code
	case errors.As(err, &ge):
		code, f.Code, f.EarliestOffset = http.StatusGone, brokerapi.CodeOffsetGone, &ge.Start
	case store.IsDamage(err):
		code, f.Code = http.StatusServiceUnavailable, brokerapi.CodeDamaged // retry once repaired
	case errors.Is(err, election.ErrNoLeader), errors.Is(err, election.ErrUnknownOutcome),
		errors.Is(err, errClosing), errors.Is(err, errNotApplied), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable // retry (with the same seq / offset)
	}
	if c.Method() != fiber.MethodGet {
		f.Outcome = outcome(err, code)
	}
	return c.Status(code).JSON(f)
}

// outcome says whether a failed write may have been applied. Only errors that prove
// the command never went into the Raft log are not_applied: refusals before it (a bad
// request, not the leader, no leader, a closing replica before queueing) and the state
// machine's own refusals, all apiErrors but the 500 of a result nobody expected.
func outcome(err error, code int) string {
	var ae *apiError
	var fe *fiber.Error
	switch {
	case errors.Is(err, election.ErrUnknownOutcome), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, errNotApplied): // errNotApplied: applied on the leader, not yet here
		return brokerapi.OutcomeUnknown
	case errors.Is(err, election.ErrNoLeader), errors.Is(err, errClosing),
		errors.As(err, &fe) && code < 500, errors.As(err, &ae) && code != http.StatusInternalServerError:
		return brokerapi.OutcomeNotApplied
	}
	return brokerapi.OutcomeUnknown
}

func success(c *fiber.Ctx, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// Splice "status":"success" into the reply object.
	out := []byte(`{"status":"success"}`)
	if len(b) > 2 {
		out = append([]byte(`{"status":"success",`), b[1:]...)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(append(out, '\n'))
}

// JSONLine is the JSON encoder of the brokers' and managers' HTTP APIs: a reply ends
// with a newline, so replies printed one after another (curl in a shell) stay apart.
func JSONLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(b, '\n'), err
}

func parseBody(c *fiber.Ctx, v any) error {
	if err := json.Unmarshal(c.Body(), v); err != nil {
		return failf(http.StatusBadRequest, "request body is not valid JSON: %v", err)
	}
	return nil
}

func checkTopic(topic string, part *int) error {
	switch {
	case topic == "":
		return failf(http.StatusBadRequest, "topic is required")
	case strings.ContainsAny(topic, "/ \t\n"):
		return failf(http.StatusBadRequest, "topic %q must not contain '/' or spaces", topic)
	case part == nil:
		return failf(http.StatusBadRequest, "partition is required")
	case *part < 0:
		return failf(http.StatusBadRequest, "partition must be >= 0, got %d", *part)
	}
	return nil
}

// found returns the replica for topic/partition or a 404.
func (b *Broker) found(topic string, part int) (*replica, error) {
	r, ok := b.replica(topic, part)
	if !ok {
		return nil, failf(http.StatusNotFound, "broker %s has no replica of %s/%d", b.cfg.ID, topic, part)
	}
	return r, nil
}

func (b *Broker) pathReplica(c *fiber.Ctx) (*replica, error) {
	topic := strings.Clone(c.Params("topic"))
	part, err := strconv.Atoi(c.Params("partition"))
	if err != nil {
		return nil, failf(http.StatusBadRequest, "partition %q is not a number", c.Params("partition"))
	}
	if err := checkTopic(topic, &part); err != nil {
		return nil, err
	}
	return b.found(topic, part)
}

// checkConsumer is checkTopic for requests that also name a consumer.
func checkConsumer(topic string, part *int, consumer string) error {
	if err := checkTopic(topic, part); err != nil {
		return err
	}
	if consumer == "" {
		return failf(http.StatusBadRequest, "consumer_id is required")
	}
	return nil
}

// leading is the replica of topic/part when this broker leads it: writes go only there.
func (b *Broker) leading(topic string, part int) (*replica, error) {
	r, err := b.found(topic, part)
	if err != nil {
		return nil, err
	}
	if err := b.leaderFor(r); err != nil {
		return nil, err
	}
	return r, nil
}

// leaderFor returns nil when r leads, else a 421 naming the leader.
func (b *Broker) leaderFor(r *replica) error {
	if r.node.IsLeader() {
		return nil
	}
	l := r.node.Leader()
	if l.ID == "" {
		return failf(http.StatusServiceUnavailable, "partition %s/%d has no leader right now; retry", r.topic, r.part)
	}
	p := r.fullPeer(l)
	return &apiError{code: http.StatusMisdirectedRequest, leader: &p,
		msg: fmt.Sprintf("broker %s is not the leader of %s/%d; the leader is %s", b.cfg.ID, r.topic, r.part, l.ID)}
}

func (b *Broker) createReplica(c *fiber.Ctx) error {
	var req brokerapi.CreateReplicaRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	if err := checkTopic(req.Topic, req.Partition); err != nil {
		return err
	}
	if err := checkPeers(req.Peers); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	if req.RetentionMs < 0 || req.RetentionBytes < 0 {
		return failf(http.StatusBadRequest, "retention_ms and retention_bytes must not be negative")
	}
	ret := retention{req.RetentionMs, req.RetentionBytes}
	r, opened, err := b.ensureReplica(ctx, replicaDesc{Topic: req.Topic, Partition: *req.Partition, Peers: req.Peers, Leader: req.Leader, New: req.New,
		RetentionMs: ret.ms, RetentionBytes: ret.bytes})
	if err != nil {
		return err
	}
	if !opened {
		// An existing replica: it learns the peers' addresses and the retention (the
		// request that opened it recorded them already).
		for _, p := range req.Peers {
			r.rememberPeer(p)
		}
		r.setRetention(ret)
		if err := b.persist(r); err != nil {
			return err
		}
	}
	return success(c, r.status(ctx))
}

func (b *Broker) listReplicas(c *fiber.Ctx) error {
	rs := b.allReplicas()
	out := brokerapi.ListReplicasReply{Replicas: make([]brokerapi.ReplicaStatus, 0, len(rs))}
	for _, r := range rs {
		out.Replicas = append(out.Replicas, b.askedStatus(c, r))
	}
	return success(c, out)
}

func (b *Broker) replicaStatus(c *fiber.Ctx) error {
	r, err := b.pathReplica(c)
	if err != nil {
		return err
	}
	return success(c, b.askedStatus(c, r))
}

// askedStatus is r's status, brief when the request asks (?brief=true, see
// brokerapi.ListReplicasReply).
func (b *Broker) askedStatus(c *fiber.Ctx, r *replica) brokerapi.ReplicaStatus {
	if c.QueryBool("brief") {
		return r.brief(c.UserContext())
	}
	return b.statusOf(c.UserContext(), r)
}

func (b *Broker) deleteReplicaHandler(c *fiber.Ctx) error {
	r, err := b.pathReplica(c)
	if err != nil {
		return err
	}
	if err := b.deleteReplica(r); err != nil {
		return err
	}
	return success(c, fiber.Map{})
}

func (b *Broker) addMember(c *fiber.Ctx) error {
	r, err := b.pathReplica(c)
	if err != nil {
		return err
	}
	var p brokerapi.Peer
	if err := parseBody(c, &p); err != nil {
		return err
	}
	if err := checkPeer(p); err != nil {
		return failf(http.StatusBadRequest, "%v", err)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	if err := r.node.AddVoter(ctx, election.Peer{ID: p.ID, Addr: p.RaftAddr}); err != nil {
		return err
	}
	r.rememberPeer(p)
	if err := b.persist(r); err != nil {
		return err
	}
	return success(c, r.status(ctx))
}

func (b *Broker) removeMember(c *fiber.Ctx) error {
	r, err := b.pathReplica(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	if err := r.node.RemoveServer(ctx, c.Params("id")); err != nil {
		return err
	}
	return success(c, r.status(ctx))
}

// transferLeader hands the partition's leadership to another member (the managers'
// leader balancing and moves off a broker).
func (b *Broker) transferLeader(c *fiber.Ctx) error {
	r, err := b.pathReplica(c)
	if err != nil {
		return err
	}
	var req brokerapi.TransferRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	if req.ID == "" {
		return failf(http.StatusBadRequest, "id (the member to lead) is required")
	}
	if req.ID != b.cfg.ID {
		if err := b.leaderFor(r); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	if err := r.node.TransferLeadership(ctx, req.ID); errors.Is(err, election.ErrNotMember) {
		return failf(http.StatusConflict, "%v", err)
	} else if err != nil {
		return err
	}
	return success(c, r.status(ctx))
}

func (b *Broker) registerConsumer(c *fiber.Ctx) error {
	var req brokerapi.RegisterRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	if err := checkConsumer(req.Topic, req.Partition, req.ConsumerID); err != nil {
		return err
	}
	r, err := b.leading(req.Topic, *req.Partition)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	res, err := r.register(ctx, req.ConsumerID)
	if err != nil {
		return err
	}
	return success(c, brokerapi.RegisterReply{Offset: res.Offset})
}

func (b *Broker) consume(c *fiber.Ctx) error {
	var req brokerapi.ConsumeRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	if err := checkConsumer(req.Topic, req.Partition, req.ConsumerID); err != nil {
		return err
	}
	if req.Max == 0 {
		req.Max = 1
	}
	if req.Max < 0 || req.Max > maxMaxConsume {
		return failf(http.StatusBadRequest, "max must be between 1 and %d", maxMaxConsume)
	}
	r, err := b.leading(req.Topic, *req.Partition)
	if err != nil {
		return err
	}
	creq := partition.ConsumeRequest{Consumer: req.ConsumerID, Max: uint32(req.Max),
		MaxBytes: uint32(max(maxConsumeBytes, b.cfg.MaxMessageBytes))}
	if req.Offset != nil {
		creq.HasExpected, creq.Expected = true, *req.Offset
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	res, msgs, err := r.consume(ctx, creq)
	if err != nil {
		return b.explain(r.group, err)
	}
	switch res.Status {
	case partition.StatusOK:
	case partition.StatusUnknownConsumer:
		return failf(http.StatusNotFound, "consumer %s is not registered on %s/%d", req.ConsumerID, req.Topic, *req.Partition)
	case partition.StatusOffsetAhead:
		return &apiError{code: http.StatusConflict, offset: &res.From,
			msg: fmt.Sprintf("offset %d is ahead of consumer %s (at %d)", *req.Offset, req.ConsumerID, res.From)}
	default:
		return failf(http.StatusInternalServerError, "consume: %s", res.Status)
	}
	if len(msgs) == 0 {
		return &apiError{code: http.StatusNotFound, reason: brokerapi.CodeEmpty, msg: fmt.Sprintf("no messages left for consumer %s on %s/%d", req.ConsumerID, req.Topic, *req.Partition)}
	}
	countOut(r.topic, msgs)
	end := res.From + uint64(res.Count)
	out := brokerapi.ConsumeReply{Offset: res.From, Next: end, Left: res.Next - end}
	if acceptsBatch(c) {
		return successBatch(c, out, msgs)
	}
	out.Messages = make([]string, len(msgs))
	for i, m := range msgs {
		out.Messages[i] = string(m)
	}
	out.Message = &out.Messages[0]
	return success(c, out)
}

func (b *Broker) size(c *fiber.Ctx) error {
	topic := strings.Clone(c.Query("topic"))
	consumer := strings.Clone(c.Query("consumer_id"))
	var part *int
	if s := c.Query("partition"); s != "" {
		p, err := strconv.Atoi(s)
		if err != nil {
			return failf(http.StatusBadRequest, "partition %q is not a number", s)
		}
		part = &p
	}
	if err := checkConsumer(topic, part, consumer); err != nil {
		return err
	}
	r, err := b.found(topic, *part)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	if err := r.node.ReadBarrier(ctx); err != nil {
		return err
	}
	left, ok := r.fsm.Left(consumer)
	if !ok {
		return failf(http.StatusNotFound, "consumer %s is not registered on %s/%d", consumer, topic, *part)
	}
	return success(c, brokerapi.SizeReply{Size: left})
}
