package clientlib_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/consul"
	"github.com/quorumq/quorumq/discovery"
)

func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := clientlib.New(clientlib.WithManagers("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Admin().CreateTopic(ctx, "orders", 3); err != nil && !errors.Is(err, clientlib.ErrTopicExists) {
		log.Fatal(err)
	}
	p, err := c.NewProducer(ctx, "orders")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := p.Send(ctx, clientlib.Record{Key: "customer-42", Value: "two apples"}); err != nil {
		log.Fatal(err)
	}
	cs, err := c.NewConsumer(ctx, "orders")
	if err != nil {
		log.Fatal(err)
	}
	m, err := cs.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Value)
}

// Managers found through Consul, following the write manager as its "leader" tag moves.
// An agent with ACLs wants a token that reads the catalog (`quorumq dev` records one in
// cluster.json as "consul_token").
func ExampleWithResolver_consul() {
	agent, err := consul.New("127.0.0.1:8500", os.Getenv("QUORUMQ_CONSUL_TOKEN"), nil)
	if err != nil {
		log.Fatal(err)
	}
	c, err := clientlib.New(clientlib.WithResolver(agent))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// Any discovery.Resolver works, e.g. a fixed in-memory list.
func ExampleWithResolver() {
	var r discovery.Resolver = discovery.NewStatic(discovery.Instance{
		Service: discovery.ServiceManager, ID: "m1", Addr: "127.0.0.1:7001", Tags: []string{discovery.TagLeader},
	})
	c, err := clientlib.New(clientlib.WithResolver(r), clientlib.WithRetryTimeout(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

func ExampleProducer_SendAsync() {
	ctx := context.Background()
	c, err := clientlib.New(clientlib.WithManagers("127.0.0.1:7001"))
	if err != nil {
		log.Fatal(err)
	}
	p, err := c.NewProducer(ctx, "events", clientlib.WithBatchSize(1000))
	if err != nil {
		log.Fatal(err)
	}
	for i := range 100000 {
		if err := p.SendAsync(ctx, clientlib.Record{Value: fmt.Sprint("event ", i)}); err != nil {
			log.Fatal(err)
		}
	}
	// Close flushes: nil means every record is on a majority of its partition's replicas.
	if err := p.Close(ctx); err != nil {
		log.Fatal(err)
	}
}

func ExampleConsumer_Poll() {
	ctx := context.Background()
	c, err := clientlib.New(clientlib.WithManagers("127.0.0.1:7001"))
	if err != nil {
		log.Fatal(err)
	}
	cs, err := c.NewConsumer(ctx, "events")
	if err != nil {
		log.Fatal(err)
	}
	for {
		msgs, err := cs.Poll(ctx, 500)
		if err != nil {
			log.Fatal(err)
		}
		if len(msgs) == 0 {
			time.Sleep(100 * time.Millisecond) // read to the end: wait for more
			continue
		}
		for _, m := range msgs {
			fmt.Println(m.Partition, m.Offset, m.Value)
		}
	}
}

func ExampleAdmin_DescribeTopic() {
	ctx := context.Background()
	c, err := clientlib.New(clientlib.WithManagers("127.0.0.1:7001"))
	if err != nil {
		log.Fatal(err)
	}
	info, err := c.Admin().DescribeTopic(ctx, "orders")
	if errors.Is(err, clientlib.ErrUnknownTopic) {
		fmt.Println("no such topic")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range info.Partitions {
		fmt.Println(p.ID, p.Leader, p.Replicas)
	}
}
