package manager

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/httpjson"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// requestTimeout bounds every request, including a forwarded write waiting for a new
// write manager to be elected.
const requestTimeout = 10 * time.Second

// openWait is how long a create waits for its replicas to be open before it answers
// anyway (the topic exists once its command is applied). A variable so that a test can
// check, once a create answered, that its replicas are open, however slow the machine.
var openWait = 2 * time.Second

func (m *Manager) newApp() *fiber.App {
	app := fiber.New(fiber.Config{
		// Request values (topic names, ids) go into commands, errors and logs that may
		// outlive the handler; Immutable makes Fiber copy them instead of handing out
		// its reused buffers.
		Immutable:             true,
		DisableStartupMessage: true,
		ErrorHandler:          errorHandler(m.log),
		JSONEncoder:           httpjson.Line,
		ReadTimeout:           30 * time.Second,
	})
	// Tokens: admin changes topics and brokers, produce and consume what they say (per
	// topic when the token names topics), any token reads the cluster's layout.
	auth := m.cfg.Security.Auth(false)
	admin, anyRole := auth.Require(secure.RoleAdmin, nil), auth.Require("", nil)
	produce := func(t secure.TopicOf) fiber.Handler { return auth.Require(secure.RoleProduce, t) }
	consume := func(t secure.TopicOf) fiber.Handler { return auth.Require(secure.RoleConsume, t) }
	m.mountMetrics(app, anyRole)
	app.Get("/healthz", m.healthz)
	app.Get("/openapi.json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(managerapi.OpenAPI())
	})
	// writeEndpoint first: a write refused by any later handler says it was not applied.
	app.Post("/topics", writeEndpoint, admin, m.createTopic)
	app.Get("/topics", anyRole, m.listTopics)
	app.Get("/topics/:name", anyRole, m.getTopic)
	app.Post("/topics/:name/partitions", writeEndpoint, admin, m.addPartitions)
	app.Get("/topics/:name/partitions/:partition/messages", consume(secure.TopicParam("name")), m.router.readAt)
	app.Post("/producer/register", writeEndpoint, produce(secure.TopicBody), m.registerProducer)
	app.Post("/consumer/register", writeEndpoint, consume(secure.TopicBody), m.registerConsumer)
	app.Post("/producer/produce", writeEndpoint, produce(secure.TopicBody), m.router.produce)
	app.Get("/consumer/consume", writeEndpoint, consume(secure.TopicQuery), m.router.consume)
	app.Get("/size", consume(secure.TopicQuery), m.router.size)
	app.Get("/brokers", anyRole, m.listBrokers)
	app.Delete("/brokers/:id", writeEndpoint, admin, m.decommission)
	app.Post("/brokers/:id/cancel-decommission", writeEndpoint, admin, m.cancelDecommission)
	app.Get("/managers", anyRole, m.listManagers)
	app.Use(func(c *fiber.Ctx) error {
		return fail(http.StatusNotFound, managerapi.CodeNotFound, "no such endpoint: %s %s", c.Method(), c.Path())
	})
	return app
}

func reqCtx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), requestTimeout)
}

// parseBody decodes a JSON body, refusing an empty or malformed one.
func parseBody(c *fiber.Ctx, v any) error {
	body := c.Body()
	if len(body) == 0 {
		return badRequest("request body is empty; expected a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("request body is not valid JSON for this endpoint: %v", err)
	}
	return nil
}

func (m *Manager) healthz(c *fiber.Ctx) error {
	r := managerapi.HealthReply{Reply: managerapi.Success, ID: m.cfg.ID, AppliedIndex: m.store.AppliedIndex()}
	if n := m.Node(); n != nil {
		r.Leader = n.IsLeader()
		if rec, why := n.Recovering(); rec {
			r.Recovering = why
		}
		if halted, why := n.Halted(); halted {
			r.Status, r.Message = "failure", why
			return c.Status(http.StatusServiceUnavailable).JSON(r)
		}
	}
	return c.JSON(r)
}

func (m *Manager) createTopic(c *fiber.Ctx) error {
	var req managerapi.CreateTopicRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	if req.Partitions < 0 || req.Replication < 0 || req.RetentionMs < 0 || req.RetentionBytes < 0 {
		return badRequest("partitions, replication, retention_ms and retention_bytes must not be negative")
	}
	if req.Partitions == 0 {
		req.Partitions = m.cfg.Partitions
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	if req.Replication == 0 {
		req.Replication = m.cfg.Replication
		m.awaitBrokers(ctx, req.Replication)
	} else if err := m.checkReplication(ctx, req.Name, req.Replication); err != nil {
		return beforeApply(err)
	}
	res, err := m.applyWrite(c, ctx, meta.CreateTopic{Name: req.Name, Partitions: req.Partitions, Replication: req.Replication,
		Retention: meta.Retention{Ms: req.RetentionMs, Bytes: req.RetentionBytes}})
	if err != nil {
		return err
	}
	// Opening replicas again on a replay is harmless, and finishes what a first
	// attempt left undone.
	opened := m.openReplicas(res.Topic.Partitions)
	wait, stop := context.WithTimeout(ctx, openWait)
	defer stop()
	select {
	case <-opened:
	case <-wait.Done():
	}
	return c.Status(http.StatusCreated).JSON(managerapi.TopicReply{Reply: managerapi.Success, Topic: topicInfo(*res.Topic),
		Message: "topic " + strconv.Quote(req.Name) + " created" + underReplicated(*res.Topic)})
}

func (m *Manager) listTopics(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := managerapi.TopicsReply{Reply: managerapi.Success}
	err := m.read(ctx, func(s *meta.State) error {
		r.Topics = s.TopicNames()
		return nil
	})
	if r.Topics == nil {
		r.Topics = []string{}
	}
	if err != nil {
		return err
	}
	return c.JSON(r)
}

// topic reads one topic, failing with unknown_topic.
func (m *Manager) topic(ctx context.Context, name string) (meta.Topic, error) {
	var t meta.Topic
	err := m.read(ctx, func(s *meta.State) error {
		var ok bool
		if t, ok = s.Topic(name); !ok {
			return unknownTopic(name)
		}
		return nil
	})
	return t, err
}

func unknownTopic(name string) *apiError {
	return fail(http.StatusNotFound, managerapi.CodeUnknownTopic, "topic %q does not exist", name)
}

// getTopic answers with the recorded leaders, or with ?live=true the ones the replicas
// report (liveleader.go); a broker the managers hold dead is never named leader.
func (m *Manager) getTopic(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	name := c.Params("name")
	var (
		t    meta.Topic
		view map[string]meta.Broker
	)
	err := m.read(ctx, func(s *meta.State) error {
		var ok bool
		if t, ok = s.Topic(name); !ok {
			return unknownTopic(name)
		}
		view = replicaView(s, t.Partitions)
		return nil
	})
	if err != nil {
		return err
	}
	info := topicInfo(t)
	if c.QueryBool("live") {
		m.liveLeaders(ctx, t, &info, view)
	} else {
		recordedLeaders(&info, view)
	}
	return c.JSON(managerapi.TopicReply{Reply: managerapi.Success, Topic: info})
}

func (m *Manager) addPartitions(c *fiber.Ctx) error {
	var req managerapi.AddPartitionsRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	name := c.Params("name")
	before, err := m.topic(ctx, name)
	if err != nil {
		return beforeApply(err)
	}
	if err := m.checkReplication(ctx, name, before.Replication); err != nil {
		return beforeApply(err)
	}
	res, err := m.applyWrite(c, ctx, meta.AddPartitions{Topic: name, Count: req.Count})
	if err != nil {
		return err
	}
	// Partitions are only ever appended: the new ones end the topic as it was then.
	m.openReplicas(res.Topic.Partitions[len(res.Topic.Partitions)-req.Count:])
	return c.JSON(managerapi.TopicReply{Reply: managerapi.Success, Topic: topicInfo(*res.Topic)})
}

func (m *Manager) registerProducer(c *fiber.Ctx) error {
	var req managerapi.RegisterRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	res, err := m.applyWrite(c, ctx, meta.RegisterProducer{Topic: req.Topic})
	if err != nil {
		return err
	}
	return c.JSON(managerapi.ProducerReply{Reply: managerapi.Success, ProducerID: res.ID})
}

func (m *Manager) registerConsumer(c *fiber.Ctx) error {
	var req managerapi.RegisterRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	res, err := m.applyWrite(c, ctx, meta.RegisterConsumer{Topic: req.Topic, Partition: req.Partition})
	if err != nil {
		return err
	}
	return c.JSON(managerapi.ConsumerReply{Reply: managerapi.Success, ConsumerID: res.ID})
}

func (m *Manager) listBrokers(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	r := managerapi.BrokersReply{Reply: managerapi.Success}
	mv := m.mover.Load()
	if mv != nil {
		r.MovesBy = m.cfg.ID
	}
	if err := m.read(ctx, func(s *meta.State) error {
		counts := pendingMoves(s)
		if mv != nil {
			counts = mv.progress(s)
		}
		r.Brokers = brokerInfos(s.BrokerList(), counts)
		return nil
	}); err != nil {
		return err
	}
	return c.JSON(r)
}

// decommission marks the broker; the write manager then moves its replicas away and
// releases it (see health.go), so the reply comes before the moves are done.
func (m *Manager) decommission(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	id := c.Params("id")
	if _, err := m.applyWrite(c, ctx, meta.Decommission{ID: id}); err != nil {
		return err
	}
	m.wakeMover()
	return c.Status(http.StatusAccepted).JSON(managerapi.MessageReply{Reply: managerapi.Success, Message: "broker " + strconv.Quote(id) + " is decommissioning: its replicas move to other brokers, then it is released"})
}

func (m *Manager) listManagers(c *fiber.Ctx) error {
	n := m.Node()
	if n == nil {
		return errNotReady
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	members, err := n.Members(ctx)
	if err != nil {
		return err
	}
	leader := n.Leader()
	// HTTP addresses come from discovery, keyed by the Raft address each registered.
	httpOf := map[string]string{}
	if insts, err := m.cfg.Discovery.Healthy(ctx, discovery.ServiceManager); err == nil {
		for _, in := range insts {
			httpOf[in.ID] = in.Meta[discovery.MetaHTTPAddr]
		}
	}
	httpOf[m.cfg.ID] = m.httpAddr
	r := managerapi.ManagersReply{Reply: managerapi.Success, WriteManager: leader.ID}
	for _, p := range members {
		r.Managers = append(r.Managers, managerapi.ManagerInfo{ID: p.ID, RaftAddr: p.Addr, HTTPAddr: httpOf[p.ID], Leader: p.ID == leader.ID})
	}
	if r.WriteManager == "" {
		return fail(http.StatusServiceUnavailable, managerapi.CodeUnavailable, "no write manager elected right now")
	}
	return c.JSON(r)
}

func topicInfo(t meta.Topic) managerapi.TopicInfo {
	info := managerapi.TopicInfo{Name: t.Name, Replication: t.Replication, Partitions: make([]managerapi.PartitionInfo, len(t.Partitions)),
		RetentionMs: t.Retention.Ms, RetentionBytes: t.Retention.Bytes}
	for i, p := range t.Partitions {
		info.Partitions[i] = managerapi.PartitionInfo{Partition: p.Index, Leader: p.Leader, Replicas: p.Replicas}
	}
	return info
}

func brokerInfos(in []meta.BrokerInfo, moves map[string]managerapi.MoveCounts) []managerapi.BrokerInfo {
	out := make([]managerapi.BrokerInfo, len(in))
	for i, b := range in {
		out[i] = managerapi.BrokerInfo{ID: b.ID, Addr: b.Addr, RaftAddr: b.RaftAddr, State: string(b.State), Replicas: b.Replicas,
			Leaders: b.Leaders, Moves: moves[b.ID]}
	}
	return out
}
