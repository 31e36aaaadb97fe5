// Package server puts the gateway's routes together:
//
//	/v1/dev/token     the embedded default's sign-in (only with a dev key file)
//	/v1/...           REST/JSON of every RPC with a google.api.http rule; live streams as server-sent events
//	/healthz, /readyz the process, and the backends' grpc.health.v1
//	/ui-config.json   what the page may offer
//	/openapi.json     the merged OpenAPI description
//	/                 the web page's static files
//
// behind the access log, CORS, the security headers, the body limit and the unary timeout.
package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"todo-chatbot/gateway"
	"todo-chatbot/gateway/internal/backends"
	"todo-chatbot/gateway/internal/config"
	"todo-chatbot/gateway/internal/devtoken"
	"todo-chatbot/gateway/internal/grpcfront"
	"todo-chatbot/gateway/internal/httpedge"
	"todo-chatbot/gateway/internal/rest"
	"todo-chatbot/gateway/internal/site"
)

// readinessTimeout bounds one backend's health answer.
const readinessTimeout = 2 * time.Second

// Server is the gateway's HTTP handler and what it needs to shut down.
type Server struct {
	Handler http.Handler
	// GRPC is the gRPC front (nil unless TODO_GATEWAY_GRPC_LISTEN is set), on the same backend connections.
	GRPC     *grpc.Server
	backends *backends.Backends
	// streams is the parent of every live stream's context: cancelled at shutdown, so streams end (with an
	// UNAVAILABLE error event) while unary calls may still finish.
	streams      context.Context
	endStreams   context.CancelFunc
	shuttingDown atomic.Bool
}

// New connects to the backends and builds the routes.
func New(cfg config.Config, logger *slog.Logger) (*Server, error) {
	var signer *devtoken.Signer
	if cfg.DevSignIn() {
		var err error
		if signer, err = devtoken.LoadKey(cfg.DevKeyFile); err != nil {
			return nil, err
		}
	}
	openapi, err := gateway.OpenAPI()
	if err != nil {
		return nil, err
	}
	pools, err := backends.Open(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{backends: pools}
	s.streams, s.endStreams = context.WithCancel(context.Background())
	api, err := rest.NewMux(context.Background(), pools, s.shuttingDown.Load)
	if err != nil {
		pools.Close()
		return nil, err
	}
	isStream := httpedge.StreamPathMatcher(rest.StreamPaths())

	routes := http.NewServeMux()
	if signer != nil {
		routes.Handle("/v1/dev/token", signer)
	}
	routes.Handle("/v1/", httpedge.LimitBody(cfg.MaxBodyBytes, s.calls(api, isStream, cfg.Timeout)))
	routes.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	routes.HandleFunc("/readyz", s.ready)
	routes.Handle("/ui-config.json", site.UIConfigHandler(site.UIConfig{DevSignIn: signer != nil}))
	routes.Handle("/openapi.json", site.OpenAPIHandler(openapi))
	routes.Handle("/", site.StaticHandler(cfg.StaticDir))

	if cfg.GRPCListen != "" {
		if s.GRPC, err = grpcfront.New(pools.Routes()); err != nil {
			pools.Close()
			return nil, err
		}
	}
	s.Handler = httpedge.AccessLog(logger, httpedge.CORS(cfg.CORSOrigins, site.SecurityHeaders(routes)))
	return s, nil
}

// calls gives a unary call the timeout and a stream the shutdown signal (and events when asked for).
func (s *Server) calls(api http.Handler, isStream httpedge.IsStream, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && isStream(r.URL.Path) {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			stop := context.AfterFunc(s.streams, cancel)
			defer stop()
			r = r.WithContext(ctx)
			if rest.WantsEvents(r) {
				r = rest.PrepareEventStream(w, r)
			}
			api.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		api.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ready, services := s.backends.Ready(r.Context(), readinessTimeout)
	status := http.StatusOK
	if !ready || s.shuttingDown.Load() {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "services": services})
}

// EndStreams ends every open live stream (first step of a shutdown); new requests to /readyz say 503.
func (s *Server) EndStreams() {
	s.shuttingDown.Store(true)
	s.endStreams()
}

// Close releases the backend connections.
func (s *Server) Close() {
	s.endStreams()
	s.backends.Close()
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
