// Package backends holds the gRPC connections to the services: a small pool of HTTP/2 connections per backend
// address (so thousands of open live streams do not queue behind one connection's stream limit), the Dapr metadata
// that names the target app when the address is a sidecar, and the readiness check of every backend.
package backends

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"todo-chatbot/gateway/internal/config"
)

// MaxMessageBytes bounds a message from a backend (a page of tasks is far smaller).
const MaxMessageBytes = 16 << 20

// Pool spreads calls over several connections to one address, round robin. It is a grpc.ClientConnInterface, so
// the generated clients take it as they would one connection.
type Pool struct {
	address config.Address
	conns   []*grpc.ClientConn
	next    atomic.Uint64
}

// Dial opens (lazily: connections are made on first use) size connections to address.
func Dial(address config.Address, size int) (*Pool, error) {
	options := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes)),
		// The services answer pings every 10 s at most (todo_kit.server KEEPALIVE); a dead connection under
		// idle streams is found within a minute.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}),
	}
	if address.DaprAppID != "" {
		options = append(options,
			grpc.WithChainUnaryInterceptor(daprUnary(address.DaprAppID, address.DaprAPIToken)),
			grpc.WithChainStreamInterceptor(daprStream(address.DaprAppID, address.DaprAPIToken)))
	}
	pool := &Pool{address: address}
	for range size {
		conn, err := grpc.NewClient(address.Target, options...)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("backend %s: %w", address.Target, err)
		}
		pool.conns = append(pool.conns, conn)
	}
	return pool, nil
}

func (p *Pool) pick() *grpc.ClientConn {
	return p.conns[p.next.Add(1)%uint64(len(p.conns))]
}

// Invoke makes a unary call on the next connection.
func (p *Pool) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return p.pick().Invoke(ctx, method, args, reply, opts...)
}

// NewStream opens a stream on the next connection.
func (p *Pool) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return p.pick().NewStream(ctx, desc, method, opts...)
}

// Close closes every connection.
func (p *Pool) Close() {
	for _, conn := range p.conns {
		_ = conn.Close()
	}
}

// daprMetadata is what every call through a sidecar carries: the target app, and the sidecar's API token when
// one is configured (a sidecar with a token refuses calls without it).
func daprMetadata(appID, apiToken string, stream bool) []string {
	kv := []string{"dapr-app-id", appID}
	if stream {
		kv = append(kv, "dapr-stream", "true")
	}
	if apiToken != "" {
		kv = append(kv, "dapr-api-token", apiToken)
	}
	return kv
}

// daprUnary names the target app (and sends the API token) on every unary call through a sidecar.
func daprUnary(appID, apiToken string) grpc.UnaryClientInterceptor {
	kv := daprMetadata(appID, apiToken, false)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, kv...), method, req, reply, cc, opts...)
	}
}

// daprStream names the target app (and sends the API token) on every stream through a sidecar; Dapr proxies a
// stream only with dapr-stream.
func daprStream(appID, apiToken string) grpc.StreamClientInterceptor {
	kv := daprMetadata(appID, apiToken, true)
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(metadata.AppendToOutgoingContext(ctx, kv...), desc, cc, method, opts...)
	}
}

// Backends is one pool per distinct address, and which pool serves each gRPC service.
type Backends struct {
	byService map[string]*Pool
	pools     []*Pool
}

// Open dials every backend the configuration names.
func Open(cfg config.Config) (*Backends, error) {
	b := &Backends{byService: map[string]*Pool{}}
	byAddress := map[config.Address]*Pool{}
	for service, appID := range config.AppIDs {
		address := cfg.AddressOf(appID)
		pool, ok := byAddress[address]
		if !ok {
			var err error
			if pool, err = Dial(address, cfg.BackendConnections); err != nil {
				b.Close()
				return nil, err
			}
			byAddress[address] = pool
			b.pools = append(b.pools, pool)
		}
		b.byService[service] = pool
	}
	return b, nil
}

// For returns the connection pool of a gRPC service (full name, e.g. todo.task.v1.TaskService).
func (b *Backends) For(service string) grpc.ClientConnInterface {
	pool, ok := b.byService[service]
	if !ok {
		panic("no backend for " + service)
	}
	return pool
}

// Routes returns the connection pool of every gRPC service by its full name (for the gRPC front).
func (b *Backends) Routes() map[string]grpc.ClientConnInterface {
	routes := make(map[string]grpc.ClientConnInterface, len(b.byService))
	for service, pool := range b.byService {
		routes[service] = pool
	}
	return routes
}

// Close closes every connection.
func (b *Backends) Close() {
	for _, pool := range b.pools {
		pool.Close()
	}
}

// ServiceHealth is one service's answer to the readiness check.
type ServiceHealth struct {
	Service string `json:"service"`
	Status  string `json:"status"`
}

// Ready asks each service's grpc.health.v1 whether it is SERVING; ready only if every one is.
func (b *Backends) Ready(ctx context.Context, timeout time.Duration) (bool, []ServiceHealth) {
	results := make(chan ServiceHealth, len(b.byService))
	for service, pool := range b.byService {
		go func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			reply, err := healthpb.NewHealthClient(pool).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
			status := "UNREACHABLE"
			if err == nil {
				status = reply.GetStatus().String()
			}
			results <- ServiceHealth{Service: service, Status: status}
		}()
	}
	ready := true
	var all []ServiceHealth
	for range b.byService {
		result := <-results
		ready = ready && result.Status == healthpb.HealthCheckResponse_SERVING.String()
		all = append(all, result)
	}
	slices.SortFunc(all, func(x, y ServiceHealth) int { return strings.Compare(x.Service, y.Service) })
	return ready, all
}
