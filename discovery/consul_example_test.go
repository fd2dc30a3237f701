package discovery_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowgate/flowgate/discovery"
)

func ExampleUpstreamsFromEntries() {
	entries := []*api.ServiceEntry{{
		Node:    &api.Node{Node: "n1", Address: "10.0.0.1"},
		Service: &api.AgentService{ID: "flowable-8443", Port: 8443, Meta: map[string]string{"secure": "true"}, Weights: api.AgentWeights{Passing: 2}},
		Checks:  api.HealthChecks{{CheckID: "serfHealth", Status: api.HealthPassing}},
	}, {
		Node:    &api.Node{Node: "n2", Address: "10.0.0.2"},
		Service: &api.AgentService{ID: "flowable-8090", Port: 8090},
		Checks:  api.HealthChecks{{CheckID: "service:flowable-8090", ServiceID: "flowable-8090", Status: api.HealthWarning}},
	}, {
		Node:    &api.Node{Node: "n3"},
		Service: &api.AgentService{ID: "flowable-broken", Port: 8090},
	}}
	ups, errs := discovery.UpstreamsFromEntries("flowable", entries, true)
	for _, u := range ups {
		fmt.Println(u.Key(), "weight", u.Weight)
	}
	for _, err := range errs {
		fmt.Println(err)
	}
	// Output:
	// https://10.0.0.1:8443 weight 2
	// consul service "flowable" instance "flowable-broken" skipped: no service or node address
}

// ExampleNewConsul shows how the agent wires Consul discovery: static
// upstreams serve until Consul has answered once.
func ExampleNewConsul() {
	opts := discovery.ConsulOptions{
		Services:   []string{"flowable"},
		FailOpen:   false,
		Logger:     slog.Default(),
		Registerer: prometheus.NewRegistry(),
	}
	opts.Address = "127.0.0.1:8500"
	opts.TokenFile = "/etc/flowgate/consul.token"
	c, err := discovery.NewConsul(opts)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ups := make(chan discovery.Update)
	go c.Run(ctx, ups)
	for {
		select {
		case u := <-ups:
			fmt.Println(len(u.Upstreams), "upstreams; ready:", c.Ready())
		case <-ctx.Done():
			return
		}
	}
}
