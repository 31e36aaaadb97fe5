// Command todo-gateway serves the Todo Chatbot's gRPC services as REST/JSON with live streams as server-sent events,
// the web page, the OpenAPI description and, in the embedded default, a dev sign-in. Settings come from TODO_GATEWAY_*
// variables or the matching flags (todo-gateway -h lists them).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"todo-chatbot/gateway/internal/config"
	"todo-chatbot/gateway/internal/server"
)

func main() {
	cfg, err := config.Load(os.Environ(), os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "todo-gateway: configuration error: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if err := run(cfg, logger); err != nil {
		fmt.Fprintf(os.Stderr, "todo-gateway: %v\n", err)
		os.Exit(1)
	}
}

// run serves (REST, and the gRPC front when configured) until SIGTERM or SIGINT, then ends the live streams, lets
// unary calls finish (ShutdownGrace at most) and returns.
func run(cfg config.Config, logger *slog.Logger) error {
	gw, err := server.New(cfg, logger)
	if err != nil {
		return err
	}
	defer gw.Close()
	listener, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", cfg.Listen, err)
	}
	var grpcListener net.Listener
	if gw.GRPC != nil {
		if grpcListener, err = net.Listen("tcp", cfg.GRPCListen); err != nil {
			_ = listener.Close()
			return fmt.Errorf("cannot listen on %s (TODO_GATEWAY_GRPC_LISTEN): %w", cfg.GRPCListen, err)
		}
	}
	httpServer := &http.Server{
		Handler:           gw.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Streams write for hours, so no WriteTimeout; no ReadTimeout either, as an expired read deadline cancels a
		// stream's context: httpedge.LimitBody gives the body read its own deadline.
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	httpServer.RegisterOnShutdown(gw.EndStreams)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	httpServed := make(chan error, 1)
	go func() { httpServed <- httpServer.Serve(listener) }()
	grpcServed := make(chan error, 1)
	if grpcListener != nil {
		go func() { grpcServed <- gw.GRPC.Serve(grpcListener) }()
		logger.Info("serving the gRPC front", slog.String("address", grpcListener.Addr().String()))
	}
	logger.Info("serving", slog.String("address", listener.Addr().String()), slog.Bool("dev_sign_in", cfg.DevSignIn()),
		slog.String("static_dir", cfg.StaticDir))

	select {
	case err := <-httpServed:
		return err
	case err := <-grpcServed:
		return fmt.Errorf("the gRPC front stopped: %w", err)
	case <-ctx.Done():
	}
	logger.Info("stopping")
	shutdown, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	grpcStopped := make(chan struct{})
	go func() {
		defer close(grpcStopped)
		if gw.GRPC != nil {
			stopGRPC(shutdown, gw.GRPC)
		}
	}()
	if err := httpServer.Shutdown(shutdown); err != nil {
		_ = httpServer.Close()
	}
	<-grpcStopped
	if err := <-httpServed; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// stopGRPC lets the gRPC front's calls finish until ctx ends, then ends the rest (open streams) at once.
func stopGRPC(ctx context.Context, server *grpc.Server) {
	done := make(chan struct{})
	go func() {
		server.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		server.Stop()
	}
}
